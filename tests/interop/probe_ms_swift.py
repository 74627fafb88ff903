"""Run inside the ms-swift venv: encode an export with ms-swift's own dataset loader and template
(the path `swift sft` takes) and print every sample's ids and labels.

usage: probe_ms_swift.py STUDENT EXPORT  (settings from EXPORT/ms_swift_args.json; its env must be set)
"""

import json
import sys
from pathlib import Path

from swift import get_processor, get_template, load_dataset
from swift.version import __version__

student, export = sys.argv[1:3]
settings = json.loads(Path(export, "ms_swift_args.json").read_text())
args = settings["args"]
processor = get_processor(student, model_type="qwen3_vl_moe")
template = get_template(
    processor,
    template_type=args["template"],
    max_length=args.get("max_length"),
    truncation_strategy=args["truncation_strategy"],
    agent_template=args["agent_template"],
    loss_scale=args["loss_scale"],
)
template.set_mode("train")
# ms-swift's Qwen-VL templates hard-code Qwen's vocabulary ids for the media pads (image 151655,
# video 151656) and expand only tokens with those ids. A real Qwen3-VL student has exactly those ids;
# the tiny test student's tokenizer does not, so point the template at its ids (nothing else changes).
tokenizer = processor.tokenizer
hardcoded = {"image": template.image_token_id, "video": template.video_token_id}
template.image_token_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
template.video_token_id = tokenizer.convert_tokens_to_ids("<|video_pad|>")
result = {"framework": "ms-swift", "version": __version__, "settings": settings, "datasets": {}}
result["processor_class"] = type(processor).__name__
result["media_token_ids"] = {
    "hardcoded": hardcoded,
    "student": {"image": template.image_token_id, "video": template.video_token_id},
}
for path in args["dataset"]:
    dataset, _ = load_dataset([path], split_dataset_ratio=0, num_proc=1, shuffle=False)
    rows = []
    for raw in dataset:
        try:
            encoded = template.encode(raw)
        except Exception as exc:  # a sample that does not load is a finding, not a crash
            rows.append({"error": f"{type(exc).__name__}: {exc}", "images": len(raw.get("images") or [])})
            continue
        rows.append(
            {
                "input_ids": list(encoded["input_ids"]),
                "labels": list(encoded["labels"]),
                "images": len(raw.get("images") or []),
            }
        )
    result["datasets"][Path(path).stem] = rows
print("PROBE-RESULT " + json.dumps(result))

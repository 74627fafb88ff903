"""Run inside the LLaMA-Factory venv: preprocess an export with LLaMA-Factory's own dataset and
template code (the path `llamafactory-cli train` takes) and print every sample's ids and labels.

usage: probe_llamafactory.py STUDENT EXPORT WORKDIR  (settings from EXPORT/dataset_info.json)
"""

import json
import sys
from pathlib import Path

from llamafactory import __version__
from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

student, export, workdir = sys.argv[1:4]
info = json.loads(Path(export, "dataset_info.json").read_text())
settings = next(iter(info.values()))["trajforge_train_settings"]
result = {"framework": "llamafactory", "version": __version__, "settings": settings, "datasets": {}}
for name in settings["dataset"].split(","):
    args = {
        **settings,
        "dataset": name,
        "model_name_or_path": student,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "full",
        "output_dir": str(Path(workdir, "out")),
        "overwrite_cache": True,
        "report_to": "none",
        "preprocessing_num_workers": None,
    }
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    rows = module["train_dataset"]
    result["processor_class"] = type(tokenizer_module["processor"]).__name__
    result["datasets"][name] = [
        {"input_ids": list(r["input_ids"]), "labels": list(r["labels"]), "images": len(r["images"] or [])}
        for r in rows
    ]
print("PROBE-RESULT " + json.dumps(result))

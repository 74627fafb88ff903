"""The student's processor: the real one from a model folder, or a tiny one built offline.

Everything downstream (formatter, trainer, export) only talks to a Qwen3-VL processor: its chat
template renders the conversation, its tokenizer makes the ids, its image processor decides the
image token counts. The tiny processor (tests, the `tiny` config) has a ~1.8K-token byte-level BPE split as
Qwen splits and trained on what ships with trajforge (`tokenizer_corpus`), the Qwen special tokens, the PIL Qwen image processor (no torchvision needed) and
a chat template of our own that renders the same format as the official Qwen3-VL template (a
conformance test checks that against the official file when it is available).
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Qwen control tokens (special: never split, never merged) and the added text tokens.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>")

#: Our own template for the tiny processor: system, user/tool content with images as
#: `<|vision_start|><|image_pad|><|vision_end|>`, assistant text, consecutive tool messages in one
#: user turn. Same rendering as the official Qwen3-VL template for tool-less conversations.
TINY_CHAT_TEMPLATE = """
{%- macro content_text(content) -%}
{%- if content is string -%}{{ content }}{%- else -%}
{%- for item in content -%}
{%- if item.type == 'image' or 'image' in item or 'image_url' in item -%}<|vision_start|><|image_pad|><|vision_end|>
{%- elif item.type == 'video' or 'video' in item -%}<|vision_start|><|video_pad|><|vision_end|>
{%- elif 'text' in item -%}{{ item.text }}{%- endif -%}
{%- endfor -%}{%- endif -%}
{%- endmacro -%}
{%- for message in messages -%}
{%- if message.role == 'system' -%}
{%- if loop.first -%}<|im_start|>system
{% if message.content is string %}{{ message.content }}{% else %}{% for item in message.content %}{% if 'text' in item %}{{ item.text }}{% endif %}{% endfor %}{% endif %}<|im_end|>
{% endif -%}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{ '<|im_start|>user' }}{%- endif -%}
{{ '\n<tool_response>\n' }}{{ content_text(message.content) }}{{ '\n</tool_response>' }}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{ '<|im_end|>\n' }}{%- endif -%}
{%- else -%}
<|im_start|>{{ message.role }}
{{ content_text(message.content) }}<|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}<|im_start|>assistant
{% endif -%}
""".strip()

#: Qwen2/Qwen3's own pre-tokenizer pattern (from their `tokenizer.json`): letters with one leading
#: non-letter (` the`, `_search`), digits one by one, punctuation runs, newlines.
QWEN_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
#: The tiny BPE's size: JSON keys, tags, tool names and the prompts' common words are single tokens.
TINY_VOCAB_SIZE = 3072


def build_tiny_tokenizer(vocab_size: int = TINY_VOCAB_SIZE) -> Any:
    """A deterministic byte-level BPE, split as Qwen splits, with the Qwen special and added tokens.

    Trained offline on trajforge's own prompts, tool schemas and sample turns
    (`stages.sft.tokenizer_corpus`), never on a run's data, so every run builds the same one.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from stages.sft.tokenizer_corpus import tokenizer_corpus

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(tokenizer_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),
    )
    tokenizer.add_tokens(list(ADDED_TOKENS))
    return tokenizer


@cache
def image_only_processor_class() -> type:
    """Qwen3VLProcessor without the video processor (which needs torchvision)."""
    from transformers import Qwen3VLProcessor
    from transformers.processing_utils import ProcessorMixin

    class Qwen3VLImageProcessorOnly(Qwen3VLProcessor):  # named IMAGE_ONLY_PROCESSOR
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)
            self.vision_start_token, self.vision_end_token = "<|vision_start|>", "<|vision_end|>"
            self.vision_start_token_id = tokenizer.convert_tokens_to_ids(self.vision_start_token)
            self.vision_end_token_id = tokenizer.convert_tokens_to_ids(self.vision_end_token)

    return Qwen3VLImageProcessorOnly


def image_processor(*, min_pixels: int, max_pixels: int, patch_size: int = 16) -> Any:
    """The PIL-backend Qwen image processor (works without torchvision)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    return Qwen2VLImageProcessorPil(
        patch_size=patch_size,
        merge_size=2,
        temporal_patch_size=2,
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels},
    )


def build_tiny_processor(
    *, min_pixels: int = 1024, max_pixels: int = 65_536, chat_template: str | None = None
) -> Any:
    """The offline processor used by tests and the `tiny` config."""
    cls = image_only_processor_class()
    return cls(
        image_processor=image_processor(min_pixels=min_pixels, max_pixels=max_pixels),
        tokenizer=build_tiny_tokenizer(),
        chat_template=chat_template or TINY_CHAT_TEMPLATE,
    )


def load_processor(path: str | Path, *, min_pixels: int, max_pixels: int) -> Any:
    """The student's own processor from a local folder; image-only fallback without torchvision."""
    from transformers import AutoProcessor, AutoTokenizer

    try:
        processor = AutoProcessor.from_pretrained(str(path))
    except (ImportError, AttributeError, ValueError) as exc:  # no torchvision: no video processor
        log.warning("AutoProcessor failed (%s); using the image-only Qwen3-VL processor", exc)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        template = getattr(tokenizer, "chat_template", None)
        template_file = Path(path) / "chat_template.jinja"
        if template_file.exists():
            template = template_file.read_text()
        processor = image_only_processor_class()(
            image_processor=image_processor(min_pixels=min_pixels, max_pixels=max_pixels),
            tokenizer=tokenizer,
            chat_template=template,
        )
    set_pixel_budget(processor, min_pixels=min_pixels, max_pixels=max_pixels)
    return processor


def set_pixel_budget(processor: Any, *, min_pixels: int, max_pixels: int) -> None:
    """Per-image pixel budget: the processor resizes every image into [min, max] pixels."""
    processor.image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    for attr, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(processor.image_processor, attr):
            setattr(processor.image_processor, attr, value)


def make_processor(model_path: str | None, *, min_pixels: int, max_pixels: int) -> Any:
    """The real processor when a model path is configured, else the tiny offline one."""
    if model_path:
        return load_processor(model_path, min_pixels=min_pixels, max_pixels=max_pixels)
    return build_tiny_processor(min_pixels=min_pixels, max_pixels=max_pixels)


#: What a saved processor folder names as its class: the transformers class, never our internal one.
PROCESSOR_CLASS = "Qwen3VLProcessor"
#: The image-only processor's name, for servers that register it (`stages.evaluate.serve_transformers`).
IMAGE_ONLY_PROCESSOR = "Qwen3VLImageProcessorOnly"
IMAGE_PROCESSOR_TYPE = "Qwen2VLImageProcessor"
VIDEO_PROCESSOR_TYPE = "Qwen3VLVideoProcessor"


def save_processor(processor: Any, folder: str | Path) -> Path:
    """Save as a standard transformers `Qwen3VLProcessor` folder, whatever class we used inside.

    Others load what we write (LLaMA-Factory, ms-swift, vLLM, `transformers serve` all call
    `AutoProcessor.from_pretrained`), so the folder names only classes transformers ships: the
    processor, its Qwen2-VL image processor, the Qwen3-VL video processor (defaults, with our patch
    and merge sizes; needs torchvision to instantiate, as with any Qwen3-VL checkpoint) and the
    tokenizer; the chat template sits in `chat_template.jinja` where AutoProcessor and
    AutoTokenizer both find it. Written by hand so it works without torchvision here.
    """
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    template = processor.chat_template or getattr(processor.tokenizer, "chat_template", None)
    if not template:
        raise ValueError("the processor has no chat template; the saved folder would not render chats")
    processor.tokenizer.chat_template = template
    processor.tokenizer.save_pretrained(str(folder))
    (folder / "chat_template.jinja").write_text(template)
    image = processor.image_processor.to_dict()
    image.pop("processor_class", None)
    image["image_processor_type"] = IMAGE_PROCESSOR_TYPE
    video = {
        "video_processor_type": VIDEO_PROCESSOR_TYPE,
        **{k: image[k] for k in ("patch_size", "temporal_patch_size", "merge_size") if k in image},
    }
    config = {"processor_class": PROCESSOR_CLASS, "image_processor": image, "video_processor": video}
    (folder / "processor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer_config = folder / "tokenizer_config.json"
    data = json.loads(tokenizer_config.read_text())
    data["processor_class"] = PROCESSOR_CLASS
    tokenizer_config.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return folder


def reload_processor(folder: str | Path) -> Any:
    """A processor saved by `save_processor` (the run's copy, so every rank uses the same one)."""
    import json

    from transformers import AutoTokenizer

    folder = Path(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    cfg = json.loads((folder / "processor_config.json").read_text()).get("image_processor", {})
    size = cfg.get("size", {})
    return image_only_processor_class()(
        image_processor=image_processor(
            min_pixels=size.get("shortest_edge", 1024),
            max_pixels=size.get("longest_edge", 1_048_576),
            patch_size=cfg.get("patch_size", 16),
        ),
        tokenizer=tokenizer,
        chat_template=(folder / "chat_template.jinja").read_text(),
    )

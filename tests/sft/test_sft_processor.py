"""What trajforge writes for others is a standard Qwen3-VL processor: the `sft/processor` folder and
the exported student load with `AutoProcessor`/`AutoTokenizer`/`AutoImageProcessor` as transformers
ships them, and render the same tokens trajforge trained on.

`AutoProcessor` of any Qwen3-VL checkpoint needs torchvision (the video processor); where no
torchvision imports with this torch (the CPU torch of this project's CI), those tests skip and
`make test-interop` runs this file again inside the framework environments, which have one.
"""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pipeline.schema import Trajectory
from stages.sft.formatter import Formatter, Sample, store_image_size
from stages.sft.processor import build_tiny_processor, reload_processor, save_processor
from stages.sft.synthetic import write_kept_set

IMAGE_TEXT = "<|vision_start|><|image_pad|><|vision_end|>What is in the picture?"


def _torchvision_error() -> str | None:
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a CUDA torchvision next to a CPU torch fails with RuntimeError
        return f"{type(exc).__name__}: {exc}"
    return None


def _skip_reason(error: str | None) -> str:
    import torch

    return (
        "AutoProcessor of a Qwen3-VL folder builds its video processor, which needs torchvision, and "
        f"none imports here with torch {torch.__version__} ({error}). A CPU torch needs torchvision's CPU "
        "build (download.pytorch.org/whl/cpu); the registry's torchvision wheels are CUDA builds whose "
        "_C.so needs libtorch_cuda.so. These tests run instead in `make test-interop` "
        "(tests/interop/test_interop_frameworks.py::test_auto_processor_tests_pass_with_the_frameworks_"
        "transformers), inside the LLaMA-Factory and ms-swift venvs under .cache/interop, whose CUDA "
        "torch and torchvision wheels run on the CPU."
    )


_TORCHVISION_ERROR = _torchvision_error()
needs_torchvision = pytest.mark.skipif(
    _TORCHVISION_ERROR is not None, reason=_skip_reason(_TORCHVISION_ERROR)
)


@pytest.fixture(scope="module")
def internal():
    return build_tiny_processor(min_pixels=1024, max_pixels=16384)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, internal):
    """The processor folder and an exported student (tiny model + the processor files)."""
    from stages.sft.model import build_model, tiny_config
    from stages.sft.student_export import export

    base = tmp_path_factory.mktemp("proc")
    processor_dir = save_processor(internal, base / "processor")
    model = build_model(tiny_config(internal.tokenizer))
    export_dir = export(model, base / "export", processor_dir=processor_dir)
    return {"processor": processor_dir, "export": export_dir}


def test_saved_folder_names_only_transformers_classes(folders):
    import transformers

    for folder in folders.values():
        config = json.loads((folder / "processor_config.json").read_text())
        assert config["processor_class"] == "Qwen3VLProcessor"
        assert hasattr(transformers, config["processor_class"])
        assert hasattr(transformers, config["image_processor"]["image_processor_type"])
        assert config["video_processor"]["video_processor_type"] == "Qwen3VLVideoProcessor"
        tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
        assert tokenizer_config["processor_class"] == "Qwen3VLProcessor"
        assert hasattr(transformers, tokenizer_config["tokenizer_class"])
        assert "ImageProcessorOnly" not in "".join(p.read_text() for p in folder.glob("*.json"))


@pytest.mark.parametrize("which", ["processor", "export"])
def test_auto_tokenizer_and_image_processor_match_training(folders, internal, which):
    from transformers import AutoImageProcessor, AutoTokenizer

    folder = folders[which]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "<think>x</think>"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == internal.apply_chat_template(
        messages, tokenize=False
    )
    assert (
        tokenizer("<|im_start|>assistant\n<think>")["input_ids"]
        == internal.tokenizer("<|im_start|>assistant\n<think>")["input_ids"]
    )
    image = Image.new("RGB", (200, 120), (10, 200, 30))
    loaded = AutoImageProcessor.from_pretrained(folder)(images=[image], return_tensors="pt")
    ours = internal.image_processor(images=[image], return_tensors="pt")
    assert loaded["image_grid_thw"].tolist() == ours["image_grid_thw"].tolist()
    assert loaded["pixel_values"].shape == ours["pixel_values"].shape


def test_reload_processor_renders_what_it_saved(folders, internal, tmp_path):
    store = write_kept_set(tmp_path / "run", 2)
    trajectories = store.read_records("kept", Trajectory)
    reloaded = reload_processor(folders["processor"])
    for trajectory in trajectories:
        a = Formatter(internal, max_len=8192, image_size=store_image_size(store))(trajectory)
        b = Formatter(reloaded, max_len=8192, image_size=store_image_size(store))(trajectory)
        assert isinstance(a, Sample) and a.input_ids == b.input_ids and a.image_grid_thw == b.image_grid_thw


@needs_torchvision
@pytest.mark.parametrize("which", ["processor", "export"])
def test_auto_processor_is_qwen3vl_and_turns_image_and_text_into_inputs(folders, internal, which):
    from transformers import AutoProcessor, Qwen3VLProcessor

    processor = AutoProcessor.from_pretrained(folders[which])
    assert type(processor) is Qwen3VLProcessor
    image = Image.new("RGB", (200, 120), (10, 200, 30))
    out = processor(images=[image], text=[IMAGE_TEXT], return_tensors="pt")
    grid = out["image_grid_thw"][0].tolist()
    assert out["pixel_values"].shape[0] == grid[0] * grid[1] * grid[2]
    ids = out["input_ids"][0].tolist()
    assert ids.count(processor.image_token_id) == grid[0] * grid[1] * grid[2] // 4
    ours = internal(images=[image], text=[IMAGE_TEXT], return_tensors="pt")
    assert ids == ours["input_ids"][0].tolist()


@needs_torchvision
def test_auto_processor_chat_template_equals_trajforge_sample(folders, tmp_path):
    from transformers import AutoProcessor

    store = write_kept_set(tmp_path / "run", 2)
    processor = AutoProcessor.from_pretrained(folders["processor"])
    fmt = Formatter(reload_processor(folders["processor"]), max_len=8192, image_size=store_image_size(store))
    for trajectory in store.read_records("kept", Trajectory):
        sample = fmt(trajectory)
        messages = [
            {
                **m,
                "content": [
                    {"type": "image", "image": store.images.open(i["image"]).convert("RGB")}
                    if i["type"] == "image"
                    else i
                    for i in m["content"]
                ],
            }
            for m in fmt.messages(trajectory)
        ]
        out = processor.apply_chat_template(messages, tokenize=True, return_dict=True)
        assert isinstance(sample, Sample) and list(out["input_ids"][0]) == sample.input_ids

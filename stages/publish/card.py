"""The dataset card (README.md) of a published kept set: YAML metadata, then what a user needs.

The YAML is produced by the libraries that read it (`huggingface_hub.DatasetCardData`,
`datasets`' `MetadataConfigs` and `DatasetInfosDict`), so `load_dataset(repo, subset)` and the Hub
viewer find the configs and features. The body reports counts, the category mix, the tool-call
histogram, filter pass rates (from RUN/report.json), teachers, the trajforge version and config
hash, the row layout, and how to train on it with trajforge, LLaMA-Factory, ms-swift or TRL.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from importlib import metadata
from typing import TYPE_CHECKING, Any

import yaml

from stages.publish.layout import SPLIT, BuildReport, features
from stages.publish.trainer_exports import IMAGE_TOKEN

if TYPE_CHECKING:
    from pipeline.store import RunStore

TASK_CATEGORIES = ["image-text-to-text", "visual-question-answering"]
TAGS = ["agent", "tool-use", "multimodal", "thinking-with-images", "deep-research", "synthetic", "trajforge"]
HIST_MAX = 10  # tool-call histogram buckets 0..9, then "10+"


def trajforge_version() -> str:
    try:
        return metadata.version("trajforge")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def run_config(store: RunStore) -> tuple[str, dict[str, Any]]:
    """(config hash, resolved config tree) of a run; the hash is `pipeline.config.config_hash`."""
    from pipeline.config import ConfigError, config_hash, load_config

    path = store.local_copy("config.yaml")
    if path is None:
        return "unknown", {}
    text = path.read_text()
    tree = yaml.safe_load(text) or {}
    try:
        return config_hash(load_config(path)), tree
    except ConfigError:  # written by another trajforge version: hash the file itself
        return hashlib.sha256(text.encode()).hexdigest()[:12], tree


def size_category(count: int) -> str:
    for bound, name in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if count < bound:
            return name
    return "1M<n<10M"


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _mb(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 100_000 else f"{num_bytes / 1e3:.1f} kB"


def _rate(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        for key in ("pass_rate", "overall", "all", "rate"):
            if isinstance(value.get(key), (int, float)):
                return float(value[key])
    return None


def pass_rates(filter_section: dict[str, Any]) -> list[tuple[str, float]]:
    """Check -> overall pass rate, from whichever of the usual shapes the filter report has."""
    for key in ("pass_rates", "pass_rate", "checks"):
        value = filter_section.get(key)
        if isinstance(value, dict):
            rows = [(check, r) for check, v in value.items() if (r := _rate(v)) is not None]
            if rows:
                return rows
    return [(k, float(v)) for k, v in filter_section.items() if "rate" in k and _rate(v) is not None]


def _scalars(section: dict[str, Any]) -> list[list[Any]]:
    return [
        [k, v] for k, v in section.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    ]


def card_metadata(report: BuildReport, license: str, repo: str) -> str:
    """The YAML header, written by the libraries that read it back."""
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        license=license,
        language=["en"],
        pretty_name=repo.split("/")[-1],
        task_categories=TASK_CATEGORIES,
        size_categories=[size_category(report.rows)],
        tags=TAGS,
    )
    infos, configs = {}, {}
    for number, (subset, build) in enumerate(report.subsets.items()):
        splits = SplitDict()
        splits.add(SplitInfo(SPLIT, num_bytes=build.num_bytes, num_examples=len(build.records)))
        infos[subset] = DatasetInfo(
            features=features(),
            config_name=subset,
            splits=splits,
            download_size=build.download_bytes,
            dataset_size=build.num_bytes,
        )
        configs[subset] = {"data_files": [{"split": SPLIT, "path": f"data/{subset}/{SPLIT}-*"}]}
        if number == 0:
            configs[subset]["default"] = True
    DatasetInfosDict(infos).to_dataset_card_data(data)
    MetadataConfigs(configs).to_dataset_card_data(data)
    return data.to_yaml()


def render_card(report: BuildReport, *, store: RunStore, repo: str, license: str = "apache-2.0") -> str:
    """The whole README.md of the dataset repository."""
    config_hash, config_tree = run_config(store)
    run_report = store.read_report()
    version = trajforge_version()
    name = repo.split("/")[-1]
    builds = report.subsets
    records = [t for b in builds.values() for t in b.records]
    subsets = list(builds)

    parts = [f"---\n{card_metadata(report, license, repo).rstrip()}\n---\n", f"# {name}\n"]
    parts.append(
        f"Agentic multimodal trajectories in the Skywork-R1V4 format, made by "
        f"trajforge {version} (config hash `{config_hash}`): "
        f"{len(records)} verified trajectories that think with images (sandboxed Python crops, zooms, "
        "enhances) and do deep research (image search, text search, page visits), plus plan-mode samples. "
        "Every trajectory passed trajforge's stepwise consistency filters.\n"
    )

    parts.append("## Subsets\n")
    rows = []
    for subset, build in builds.items():
        images = sum(len(s.observation_images) for t in build.records for s in t.steps)
        images += sum(len(t.images) for t in build.records)
        rows.append([f"`{subset}`", len(build.records), len(build.files), images, _mb(build.download_bytes)])
    parts.append(_table(["subset", "rows", "shards", "images", "download"], rows) + "\n")
    if report.skipped:
        parts.append(f"{len(report.skipped)} kept trajectories were left out (missing images).\n")
    parts.append(
        "```python\nfrom datasets import load_dataset\n\n"
        + "\n".join(f'{s} = load_dataset("{repo}", "{s}", split="train")' for s in subsets)
        + "\n```\n"
    )

    parts.append("## Row layout\n")
    parts.append(
        f"- `messages`: list of `{{role, content}}` with `role` in `system`, `user`, `assistant` and `content` "
        f"a string in which each `{IMAGE_TOKEN}` marks where the next image of `images` goes. The system "
        "message is the mode's prompt (DeepResearch executor, General executor, or planner). The first user "
        "turn holds the task images and the question. Each assistant turn is R1V4 text: "
        '`<think>...</think>` then either `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` or '
        "`<answer>...</answer>`. A tool result comes back as a user turn `<observation>...</observation>` "
        "with the images the tool produced (crops, search thumbnails). Plan-mode rows have one assistant "
        "turn whose answer is the plan as a JSON array of `{description, tool_name, parameters}` steps.\n"
        f"- `images`: list of images (the `datasets` Image feature, bytes embedded), as many as there are "
        f"`{IMAGE_TOKEN}` placeholders, in order of appearance.\n"
        "- metadata: `trajectory_id`, `task_id`, `source`, `category`, `mode`, `teacher`, `prompt_version`, "
        "`question`, `gold_answer`, `final_answer`, `plan` (JSON text of the plan the executor followed), "
        "`num_turns`, `num_tool_calls`, `tools` (tool names in call order), `num_images`.\n"
    )

    parts.append("## Category mix\n")
    categories = sorted({t.category for t in records})
    mix = [[c, *(sum(t.category == c for t in builds[s].records) for s in subsets)] for c in categories]
    parts.append(_table(["category", *subsets], mix) + "\n")

    parts.append("## Tool calls per trajectory\n")
    hist: Counter = Counter(min(len(t.tool_calls), HIST_MAX) for t in records if t.mode != "plan")
    peak = max(hist.values(), default=1)
    hist_rows = [
        [f"{n}+" if n == HIST_MAX else n, hist[n], "█" * max(1, round(20 * hist[n] / peak))]
        for n in range(HIST_MAX + 1)
        if hist[n]
    ]
    parts.append(_table(["tool calls", "trajectories", ""], hist_rows) + "\n")
    tools = Counter(s.tool_name for t in records for s in t.tool_calls)
    if tools:
        parts.append(_table(["tool", "calls"], [[f"`{k}`", v] for k, v in tools.most_common()]) + "\n")

    filter_section = run_report.get("filter") or {}
    parts.append("## Filtering\n")
    rates = pass_rates(filter_section) if isinstance(filter_section, dict) else []
    if rates:
        parts.append("Share of trajectories that passed each check (from the run's filter report):\n")
        parts.append(
            _table(["check", "pass rate"], [[f"`{c}`", f"{r:.1%}" if r <= 1 else r] for c, r in rates]) + "\n"
        )
    else:
        parts.append("The run's report has no filter pass rates.\n")
    if isinstance(filter_section, dict) and (scalars := _scalars(filter_section)):
        parts.append(_table(["filter", "value"], scalars) + "\n")

    parts.append("## Teachers\n")
    teachers = Counter(t.teacher or "unknown" for t in records)
    parts.append(_table(["teacher", "rows"], [[f"`{k}`", v] for k, v in teachers.most_common()]) + "\n")
    teacher_cfg = config_tree.get("teacher") or {}
    if teacher_cfg:
        endpoint = teacher_cfg.get("base_url") or "the offline world's oracle"
        parts.append(f"Configured teacher: `{teacher_cfg.get('model')}` at {endpoint}.\n")

    parts.append(_training_section(repo, subsets))
    synth = run_report.get("synth")
    parts.append("## Provenance\n")
    provenance = [["trajforge", version], ["config hash", f"`{config_hash}`"], ["rows", len(records)]]
    if isinstance(synth, dict):
        provenance += [[f"synth {k}", v] for k, v in _scalars(synth)]
    parts.append(_table(["", ""], provenance) + "\n")
    parts.append(
        f"License: {license}. Check the licenses of the seed datasets and teacher terms before reuse.\n"
    )
    return "\n".join(parts)


def _training_section(repo: str, subsets: list[str]) -> str:
    first = subsets[0] if subsets else "deepresearch"
    return f"""## Training on it

**trajforge** (bundled FSDP2 trainer; renders through the student's own chat template, labels on
assistant turns only, packing):

```bash
make sft RUN=runs/<name>          # or: trajforge sft --run runs/<name>
```

**LLaMA-Factory**: export ShareGPT files plus their `dataset_info.json` entries, then point
`dataset_dir` at the folder (image paths are relative to it):

```bash
trajforge export llamafactory --run runs/<name> --out data/trajforge
# train.yaml: dataset_dir: data/trajforge, dataset: trajforge_{first}, template: qwen3_vl
```

The rows of this repo already use the same `messages` / `images` columns, so a `dataset_info.json`
entry with `"hf_hub_url": "{repo}"`, `"subset": "{first}"`, `"formatting": "sharegpt"` and tags
`role`/`content`/`user`/`assistant`/`system` also works.

**ms-swift**: export the agent layout (assistant think, `tool_call`, `tool_response` turns):

```bash
trajforge export ms-swift --run runs/<name> --out data/trajforge-swift
swift sft --model Qwen/Qwen3-VL-30B-A3B-Instruct --dataset data/trajforge-swift/{first}.jsonl --agent_template hermes
```

**TRL / transformers processors** want content lists; split each message at `{IMAGE_TOKEN}`:

```python
def to_content(text):
    parts = text.split("{IMAGE_TOKEN}")
    items = [{{"type": "text", "text": parts[0]}}] if parts[0] else []
    for part in parts[1:]:
        items.append({{"type": "image"}})
        if part:
            items.append({{"type": "text", "text": part}})
    return items

row = {first}[0]
messages = [{{"role": m["role"], "content": to_content(m["content"])}} for m in row["messages"]]
```
"""

"""Configuration: YAML files in `configs/` plus `key.path=value` overrides from the CLI.

Secrets never live in a config: fields ending in `_env` name the environment variable that holds
a key, and `secret(name)` reads it at the moment of use. The resolved config saved into a run
therefore contains variable names only. Unknown keys are errors (a typo should not silently
fall back to a default).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunConfig(Section):
    name: str = "demo"
    root: str = "runs"  # runs/<name>/, or an address: s3://bucket/runs (see pipeline/run_files.py)

    @property
    def location(self) -> str:
        """The run folder or address (`runs/demo`, `s3://bucket/runs/demo`)."""
        from pipeline.run_files import join_location

        return join_location(self.root, self.name)

    @property
    def dir(self) -> Path:
        """The run's local folder: the run folder itself, or a remote run's scratch folder."""
        from pipeline.run_files import is_remote, scratch_folder

        return scratch_folder(self.location) if is_remote(self.location) else Path(self.root) / self.name


class WorldConfig(Section):
    """The offline world: built if absent, served on loopback, used as teacher and web."""

    enabled: bool = True
    dir: str = "worlds/default"
    seed: int = 0
    entities: int = 300
    tasks: int = 200
    host: str = "127.0.0.1"
    port: int = 0  # 0: pick a free port
    # server knobs (world.Knobs fields: latency, rate_limit, errors, defects, seed, ...)
    knobs: dict[str, Any] = Field(default_factory=dict)


class SeedsConfig(Section):
    """Where tasks come from: the world, a Hub dataset, a local HF dataset folder, parquet or JSONL."""

    source: Literal["world", "hub", "hf", "parquet", "jsonl"] = "world"
    # a folder or file; with `hub`: a Hub id or a local copy (default: the preset's Hub copy)
    path: str | None = None
    subset: str | None = None  # hub: the dataset's config (FineVision has one per source)
    split: str | None = None  # hub: default the preset's split, else train
    streaming: bool = True  # hub: read rows as they come (seeds.limit stops the download early)
    image_root: str | None = None  # where relative image paths resolve (default: the seeds' folder)
    preset: str | None = None  # column layout preset, e.g. "image-question-answer", "fvqa"
    columns: dict[str, str] = Field(default_factory=dict)  # our name -> column (path) in the source
    min_resolution: int = 0  # R1V4 used 1024 for thinking-with-images seeds
    limit: int | None = None
    category: str | None = None
    mode: Literal["deepresearch", "general"] | None = None  # None: the preset's, else deepresearch
    dedupe: bool = True  # drop rows whose question + images repeat an earlier row
    max_image_pixels: int = 64_000_000  # decoding guard for seed images
    max_question_chars: int = 8000  # longer questions are refused (a row, not the run)


class TeacherConfig(Section):
    """Any OpenAI-compatible chat-completions endpoint (None base_url: the world's oracle)."""

    base_url: str | None = None
    model: str = "oracle"
    api_key_env: str | None = None
    temperature: float | None = 0.7  # None: not sent (OpenAI's o-series and gpt-5 refuse it)
    top_p: float | None = 1.0
    max_tokens: int = 2048
    # OpenAI's reasoning models take `max_completion_tokens` and refuse `max_tokens`
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    concurrency: int = 64
    requests_per_s: float | None = None
    # with no limit configured or stated in the endpoint's x-ratelimit headers, start unpaced
    # (true: ramp from 16/s, for an endpoint that rate-limits without saying so)
    slow_start: bool = False
    tokens_per_min: int | None = None
    timeout_s: float = 120.0
    max_retries: int = 6
    image_max_pixels: int = 1_048_576  # pixel budget for images sent to the teacher
    cache: bool = True
    extra_body: dict[str, Any] = Field(default_factory=dict)
    # how tool calls travel: R1V4 text in the content, or the server's native function calling
    # (vLLM needs --enable-auto-tool-choice --tool-call-parser NAME; OpenAI/OpenRouter have it)
    tool_protocol: Literal["text", "native"] = "text"
    stream: bool = False  # stream replies (reasoning and tool calls arrive as deltas)
    # stop sequences: a teacher must not write its own tool result. Some endpoints (OpenAI's
    # reasoning models) reject `stop`: set [] there; a reply holding one is still cut when read.
    stop: list[str] = Field(default_factory=lambda: ["<observation>"])
    # a reply cut at max_tokens is never resent as is: `reask` shows the cut reply and asks for
    # a shorter turn (within synth.format_retries), `fail` ends the rollout as `truncated`
    on_truncated: Literal["reask", "fail"] = "reask"
    # the endpoint honours response_format json_schema (OpenAI, vLLM/SGLang guided decoding);
    # judges ask for their verdict that way (filter.judge_structured_output overrides)
    structured_output: bool = False
    # the SDK's HTTP transport: aiohttp (openai.DefaultAioHttpClient) spends about half the CPU
    # of httpx's pool per call at hundreds of connections in flight; httpx is the SDK default
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"


class CodeToolConfig(Section):
    isolation: Literal["auto", "bwrap", "namespaces", "unsafe-local"] = "auto"
    workers: int = 2  # sandbox processes started with the pool
    # more start while calls queue for a free one, up to this many (each holds up to
    # decode_cache_mb of decoded images); unset: the machine's cores (a call is CPU work: more
    # processes than cores only add decode caches); equal to `workers`: a fixed pool
    max_workers: int | None = None
    session: bool = False  # keep variables across calls within one trajectory
    cpu_s: float = 10.0
    wall_s: float = 20.0
    memory_mb: int = 1024
    max_processes: int = 8
    max_output_bytes: int = 65_536
    max_images: int = 8
    max_image_pixels: int = 16_777_216
    max_file_mb: int = 64  # per file written by the code (RLIMIT_FSIZE); /output holds max_images of them
    tmp_mb: int = 64  # size of the sandbox's private /tmp
    max_sessions: int = 32  # live session namespaces per worker (oldest evicted)
    session_cpu_calls: int = 10  # a session's CPU budget is cpu_s times this (RLIMIT_CPU is cumulative)
    work_dir: str | None = None  # host staging folders (default: a private temporary folder)
    # PNG inputs of at least this many pixels are staged as filter-free copies (same pixels,
    # a crop call on them costs about half the sandbox CPU); 0 stages every input as it is
    fast_inputs_min_pixels: int = 1_000_000
    fast_inputs_cache_mb: int = 2048  # disk the copies may take (least recently used go first)
    # each worker's zygote keeps staged PNG/JPEG images of at least decode_cache_min_pixels decoded
    # (memory per worker, least recently used go first; 0 = off): a call loads them without decoding
    decode_cache_mb: int = 512
    decode_cache_min_pixels: int = 1_000_000
    # the sandbox's processes run this much nicer than the host (0-19): teacher code is batch
    # work, and when both want a CPU the event loop serving every trajectory in flight goes first
    nice: int = Field(default=5, ge=0, le=19)


class SearchToolConfig(Section):
    text_backend: Literal["local", "ddgs", "serper"] = "local"
    image_backend: Literal["local", "serper"] = "local"
    serper_key_env: str = "SERPER_API_KEY"
    corpus_dir: str | None = None  # pages.jsonl + images.jsonl (default: <world.dir>/corpus)
    # an encyclopedia served as a local web (a .zim, a MediaWiki XML dump, a folder of HTML): search,
    # image search and web_visit answer from it (`trajforge corpus index --corpus SRC` builds its index)
    corpus: str | None = None
    corpus_kind: Literal["auto", "zim", "xml", "html"] = "auto"
    corpus_cache: str | None = None  # where corpus indexes live (default: ~/.cache/trajforge/corpora)
    index_dir: str | None = None  # persistent local indexes (default: <corpus_dir>/index)
    top_k: int = 5
    cache: bool = True
    public_image_base_url: str | None = None  # where local crops are reachable for Lens


class VisitToolConfig(Section):
    timeout_s: float = 15.0  # each connect / read
    deadline_s: float = 30.0  # one page's whole visit: connect, redirects, body, extraction
    max_bytes: int = 2_000_000  # of the page after decompression
    max_extract_chars: int = 1_000_000  # of HTML (scripts and styles cut) given to trafilatura
    allow_hosts: list[str] = Field(default_factory=list)  # SSRF exceptions (the world server)
    # like curl --resolve: "world.trajforge.local" -> "127.0.0.1:8123" (the world's live port)
    host_overrides: dict[str, str] = Field(default_factory=dict)
    max_chars: int = 6000
    summarizer_base_url: str | None = None
    summarizer_model: str | None = None
    summarizer_key_env: str | None = None
    cache: bool = True


class ToolsConfig(Section):
    code: CodeToolConfig = Field(default_factory=CodeToolConfig)
    search: SearchToolConfig = Field(default_factory=SearchToolConfig)
    visit: VisitToolConfig = Field(default_factory=VisitToolConfig)
    extra: list[str] = Field(
        default_factory=list
    )  # your own tools: "package.module:Class" (stages/tools/registry.py)


class SynthConfig(Section):
    rollouts: int = 4
    max_turns: int = 12
    max_tokens: int = 32_768
    plan: bool = True
    plan_retries: int = 2
    prompt_version: str = "r1v4-v1"
    in_flight: int = 64  # trajectories in flight per worker
    workers: int = 1
    ray_address: str | None = None
    shard_size: int = 64
    flush_s: float = 30.0  # write a partial shard at least this often
    observation_role: Literal["user", "tool"] = "user"  # how tool results reach the teacher
    send_rollout_as: Literal["seed", "user", "none"] = "seed"  # makes rollouts differ
    tasks_in_flight: int = 0  # tasks submitted per worker at once (0: 2 * in_flight / rollouts + 2)
    # trajectories a worker starts per second at most (0: no limit): a thousand starting in one
    # instant open a thousand teacher connections in one turn of the event loop (0.8 s stalled)
    start_rate: float = 500.0
    # seconds between freezes of what survived a young collection, so a full collection walks
    # only recent objects, not every trajectory in flight (0: freeze start-up state only)
    gc_freeze_s: float = 5.0
    # an unreadable or truncated reply is shown back to the teacher with its error and asked
    # again this many times before it becomes an unreadable step
    format_retries: int = 1


class FilterConfig(Section):
    judge: Literal["none", "teacher", "custom"] = "none"
    judge_base_url: str | None = None
    judge_model: str | None = None
    judge_key_env: str | None = None
    drop_sandbox_errors: bool = True
    checks: list[str] = Field(default_factory=list)  # empty: every check
    cap: int = 30_000
    quotas: dict[str, float] = Field(default_factory=dict)  # category -> share of the cap
    best_per_task: int = 1
    plan_samples: bool = True
    # -- rule thresholds (verdict scores are stored, so re-filtering never re-synthesises)
    # turns of one trajectory whose slips the reader repaired (kept: the training text is
    # rendered canonically); more than this drops the trajectory; -1: no limit
    max_repairs: int = 4
    drop_tool_errors: bool = False  # errors of search/visit tools (sandbox errors: drop_sandbox_errors)
    max_recrops: int = 1  # overlapping corrections of one crop allowed before it is a re-cropping loop
    recrop_iou: float = 0.3  # IoU with the previous crop of the same image that makes a correction
    max_repeated_calls: int = 0  # identical repeated tool calls allowed
    plan_max_skipped: int = 0
    plan_min_score: float = 0.0
    min_crop_side: int = 8  # px; smaller produced images are degenerate
    uniform_std: float = 2.0  # grayscale std below which a produced image is near-uniform
    uniform_share: float = 0.97  # share of one grey level above which it is near-uniform
    min_inside: float = 0.5  # share of a crop box that must lie inside its source image
    gold_coverage: float = 0.5  # share of the task's gold region a crop of the input must cover
    use_gold_region: bool = True  # check crops against a task's target box where it has one (V*)
    # read the text of produced images (tesseract via tesserocr, cached in RUN/cache/ocr.sqlite) and
    # drop a thought that claims to read there what OCR does not find; absent tesseract: rules only
    ocr: bool = True
    ocr_tessdata: str | None = None  # folder with eng.traineddata (default: $TESSDATA_PREFIX, Debian's)
    colour_min_share: float = 0.02  # share of a produced image a claimed colour ("the red sign") must cover
    number_tolerance: float = 0.01  # relative tolerance for numeric answers
    require_gold: bool = False  # drop trajectories whose task has no gold answer
    strict_entities: bool = False  # proper names in thoughts must have appeared (closed worlds)
    # -- judges
    judge_all: bool = False  # also judge trajectories the rules already dropped
    judge_images_per_step: int = 1
    judge_max_tokens: int = 4096  # reasoning judges think first: 512 cut them off before the verdict
    # ask for the verdict as response_format json_schema (None: follow teacher.structured_output);
    # an endpoint that answers 400 to it is asked again without, for the rest of the run
    judge_structured_output: bool | None = None
    # a verdict no reply states (unreadable, truncated, refused, failed call): kept or dropped,
    # with the reply's excerpt as the reason either way, and counted in the report
    judge_unknown: Literal["keep", "drop"] = "drop"
    # -- dedup and selection
    dedup_question_similarity: float = 0.8  # MinHash Jaccard of question shingles; 0 disables
    dedup_image_distance: int = 4  # perceptual-hash Hamming distance of the first image; -1 disables
    dedup_require_both: bool = True  # duplicate = same question AND same image (else either)
    shard_rows: int = 5000


class SFTConfig(Section):
    config: str = "configs/sft/tiny.yaml"
    nproc: int = 2
    # torchrun rendezvous for multi-node runs (same command on every node); 1 node: standalone
    nnodes: int = 1
    node_rank: int | None = None
    rdzv_endpoint: str | None = None  # host:port of the rendezvous (node 0)
    rdzv_id: str = "trajforge-sft"
    max_steps: int | None = None  # stop (and checkpoint) early; the schedule keeps its length
    overrides: list[str] = Field(default_factory=list)  # `section.key=value` for the SFT YAML


class PublishConfig(Section):
    repo: str | None = None
    token_env: str = "HF_TOKEN"
    private: bool = False
    max_shard_mb: int = 300
    license: str = "apache-2.0"
    endpoint: str | None = None  # Hub endpoint (None: HF_ENDPOINT or huggingface.co); a mirror
    revision: str = "main"  # branch the push commits to


class Config(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    world: WorldConfig = Field(default_factory=WorldConfig)
    seeds: SeedsConfig = Field(default_factory=SeedsConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    tools: ToolsConfig = Field(default_factory=ToolsConfig)
    synth: SynthConfig = Field(default_factory=SynthConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    # swap a shipped prompt for your own file: prompt name -> path (planner, executor_deepresearch,
    # executor_general, judge_answer, judge_step, judge_image, judge_final)
    prompts: dict[str, str] = Field(default_factory=dict)


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and how to fix it."""


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`teacher.model=gpt-4o` -> ("teacher.model", "gpt-4o"); values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def validation_message(exc: ValidationError) -> str:
    """One line per invalid key, `section.key: problem`."""
    return "\n".join(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Prefixes of common API keys (OpenAI/Anthropic, Hugging Face, GitHub, Slack, AWS, Google).
_KEY_PREFIXES = ("sk-", "sk_", "hf_", "ghp_", "gho_", "github_pat_", "xox", "AKIA", "AIza")


def _looks_like_a_key(value: str) -> bool:
    """A value in an `*_env` field that is a key rather than a variable name."""
    if not _ENV_NAME.fullmatch(value):
        return True
    if value.startswith(_KEY_PREFIXES) and len(value) >= 20:
        return True
    # variable names are words: long runs mixing lower case, upper case and digits are keys
    return len(value) >= 24 and not value.isupper() and any(c.isdigit() for c in value)


def refuse_pasted_secrets(tree: dict[str, Any], where: str = "") -> None:
    """ConfigError (never echoing the value) for an `*_env` field that holds a key itself:
    a config is saved into the run and logged, and must only ever name the variable."""
    for key, value in tree.items():
        dotted = f"{where}.{key}" if where else str(key)
        if isinstance(value, dict):
            refuse_pasted_secrets(value, dotted)
        elif str(key).endswith("_env") and isinstance(value, str) and value and _looks_like_a_key(value):
            raise ConfigError(
                f"{dotted} must be the NAME of an environment variable (like OPENAI_API_KEY), not the key "
                "itself; the value given looks like a secret and was not saved or logged. Export the key "
                f"(export MY_KEY=...) and set {dotted}=MY_KEY"
            )


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (default: configs/default.yaml) and apply dotted overrides."""
    path = Path(path) if path else DEFAULT_CONFIG
    tree: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        tree = loaded
    elif path != DEFAULT_CONFIG:
        raise ConfigError(f"config file {path} not found; pass an existing YAML file (see configs/)")
    for item in overrides or []:
        key, value = parse_override(item)
        set_path(tree, key, value)
    refuse_pasted_secrets(tree)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"invalid config {path}:\n{validation_message(exc)}") from None
    apply_prompts(config)
    return config


def apply_prompts(config: Config) -> None:
    """Make the config's prompt files the ones this process sends (`prompts.use_files`)."""
    import prompts

    try:
        prompts.use_files(config.prompts)
    except (KeyError, FileNotFoundError) as exc:
        raise ConfigError(str(exc).strip("'\"")) from None


def resolved_yaml(config: Config) -> str:
    """The config as it ran: every default filled in; holds variable names, never secrets."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def secret(env_name: str | None, *, purpose: str) -> str | None:
    """Read a secret from the environment at the moment of use; never stored or logged."""
    if not env_name:
        return None
    if _looks_like_a_key(env_name):
        raise ConfigError(
            f"{purpose}: the configured variable name looks like a key itself; put the key in an "
            "environment variable and name that variable in the config"
        )
    value = os.environ.get(env_name)
    if value is None:
        raise ConfigError(
            f"{purpose} needs the environment variable {env_name}; export it or change the config"
        )
    return value


def config_hash(config: Config) -> str:
    from pipeline.schema import stable_hash

    return stable_hash(config.model_dump(mode="json"), length=12)

"""Hub shards, dataset card and the push, checked end to end on synthetic kept sets."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml
from publish_fakehub import FakeHub
from publish_helpers import make_run
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from stages.publish.hub import SHARD_OVERHEAD_BYTES, build_folder, plan_shards
from stages.publish.trainer_exports import conversation, flat_messages

SUBSETS = ("deepresearch", "general", "plan")
TOKEN = "hf_test_secret_token_0123456789"


def _front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.S)
    assert match, "README.md must start with a YAML block"
    return yaml.safe_load(match[1])


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    make_run(tmp_path / "run")
    return tmp_path / "run"


def test_dry_run_folder_loads_every_subset_with_images_and_card(run: Path, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "hub"
    result = CliRunner().invoke(
        app, ["publish", "--run", str(run), "--repo", "me/traj", "--dry-run", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "10 rows" in result.output

    kept = {t.trajectory_id: t for t in make_run_records(run)}
    card = (out / "README.md").read_text()
    meta = _front_matter(card)
    assert {c["config_name"] for c in meta["configs"]} == set(SUBSETS)
    assert meta["license"] == "apache-2.0" and meta["size_categories"] == ["n<1K"]
    assert "image-text-to-text" in meta["task_categories"]
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    expected_counts = {"deepresearch": 5, "general": 3, "plan": 2}
    for subset in SUBSETS:
        assert infos[subset]["splits"][0]["num_examples"] == expected_counts[subset]
        names = [f["name"] for f in infos[subset]["features"]]
        assert names[:2] == ["messages", "images"] and "trajectory_id" in names

        ds = datasets.load_dataset(str(out), subset, split="train")
        assert len(ds) == expected_counts[subset]
        raw = ds.cast_column("images", datasets.List(datasets.Image(decode=False)))
        for row, raw_row in zip(ds, raw, strict=True):
            trajectory = kept[row["trajectory_id"]]
            assert row["mode"] == subset == trajectory.mode
            messages, refs = flat_messages(conversation(trajectory))
            assert row["messages"] == messages
            placeholders = sum(m["content"].count("<image>") for m in row["messages"])
            assert placeholders == len(row["images"]) == len(refs) == row["num_images"]
            for image, blob, ref in zip(row["images"], raw_row["images"], refs, strict=True):
                assert hashlib.sha256(blob["bytes"]).hexdigest() == ref  # exact bytes, in order
                image.load()
                assert image.size[0] > 0
            assert row["tools"] == [s.tool_name for s in trajectory.tool_calls]
    # the body reports what a user needs
    assert "| `deepresearch` | 5 |" in card and "| `format` | 95.0% |" in card
    assert "glm-4.5v" in card and "config hash" in card and "trajforge export llamafactory" in card
    assert "| 3 | 5 |" in card  # five trajectories with three tool calls


def make_run_records(run: Path) -> list[Trajectory]:
    from pipeline.store import RunStore

    return RunStore(run).read_records("kept", Trajectory)


def test_shards_are_bounded_deterministic_and_replace_stale_ones(run: Path, tmp_path: Path) -> None:
    from pipeline.store import RunStore

    store = RunStore(run)
    bound_mb = 0.012  # a few deepresearch rows per shard
    first = build_folder(store, tmp_path / "a", repo="me/traj", max_shard_mb=bound_mb)
    second = build_folder(store, tmp_path / "b", repo="me/traj", max_shard_mb=bound_mb)
    assert _folder_files(tmp_path / "a") == _folder_files(tmp_path / "b")  # same input, same bytes
    deep = first.subsets["deepresearch"].files
    assert len(deep) > 1
    assert [p.name for p in deep] == [f"train-{i:05d}-of-{len(deep):05d}.parquet" for i in range(len(deep))]
    assert len(deep) < 5  # several rows share a shard
    for path in deep:
        assert path.stat().st_size <= bound_mb * 1024 * 1024 + SHARD_OVERHEAD_BYTES
    assert second.rows == 10

    # rebuilding into the same folder with a larger bound leaves no stale shard behind
    third = build_folder(store, tmp_path / "a", repo="me/traj", max_shard_mb=300)
    shards = sorted(
        p.relative_to(tmp_path / "a").as_posix() for p in (tmp_path / "a" / "data").rglob("*.parquet")
    )
    assert shards == [f"data/{s}/train-00000-of-00001.parquet" for s in SUBSETS]
    assert third.rows == 10


def test_plan_shards_keeps_order_and_bound() -> None:
    sizes = [5, 5, 5, 20, 1, 1, 9]
    groups = plan_shards(sizes, 10)
    assert [i for g in groups for i in g] == list(range(len(sizes)))
    for group in groups:
        assert sum(sizes[i] for i in group) <= 10 or len(group) == 1


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)  # the fake speaks LFS only
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with FakeHub(TOKEN) as fake:
        yield fake


def _push(run: Path, hub: FakeHub, *extra: str):
    args = ["publish", "--run", str(run), "--repo", "me/traj", "--set", f"publish.endpoint={hub.url}", *extra]
    return CliRunner().invoke(app, args)


def test_push_uploads_the_dry_run_folder_and_a_resumed_push_uploads_nothing(
    run: Path, tmp_path: Path, hub: FakeHub
) -> None:
    result = _push(run, hub)
    assert result.exit_code == 0, result.output
    repo = hub.repos["me/traj"]
    dry = tmp_path / "dry"
    CliRunner().invoke(
        app, ["publish", "--run", str(run), "--repo", "me/traj", "--dry-run", "--out", str(dry)]
    )
    expected = _folder_files(dry)
    remote = {path: stored.data for path, stored in repo.files.items() if path != ".gitattributes"}
    assert remote == expected
    assert all(stored.lfs for path, stored in repo.files.items() if path.endswith(".parquet"))
    assert [c["added"][-1] for c in repo.commits][-1] == "README.md"  # the card goes last
    assert len(hub.calls("PUT", "^/_lfs/")) == len([p for p in expected if p.endswith(".parquet")])
    commits = len(repo.commits)

    before = len(hub.requests)
    again = _push(run, hub)
    assert again.exit_code == 0, again.output
    assert "0 files uploaded" in again.output and f"{len(expected)} unchanged" in again.output
    assert len(repo.commits) == commits
    new_requests = hub.requests[before:]
    assert not [r for r in new_requests if "/preupload/" in r[1] or "/commit/" in r[1] or r[0] == "PUT"]

    # the token never reaches output, the report or the run folder
    assert TOKEN not in result.output + again.output
    for path in run.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    report = (run / "report.json").read_text()
    assert '"publish"' in report


def test_interrupted_push_resumes_with_only_the_missing_files(run: Path, hub: FakeHub) -> None:
    hub.fail_commit_after = 1  # first subset commits, the next commit fails
    first = _push(run, hub)
    assert first.exit_code != 0
    repo = hub.repos["me/traj"]
    assert len(repo.commits) == 1
    done = set(repo.commits[0]["added"])
    puts_before = len(hub.calls("PUT", "^/_lfs/"))

    second = _push(run, hub)
    assert second.exit_code == 0, second.output
    added_now = {p for c in repo.commits[1:] for p in c["added"]}
    assert added_now and not (added_now & done)  # nothing already committed is sent again
    assert f"{len(done)} unchanged" in second.output
    # LFS objects uploaded before the outage (if any) are not uploaded twice
    assert len(hub.calls("PUT", "^/_lfs/")) - puts_before <= len(
        [p for p in added_now if p.endswith(".parquet")]
    )
    assert "README.md" in repo.files


def test_push_deletes_shards_that_a_new_layout_no_longer_has(run: Path, hub: FakeHub) -> None:
    assert _push(run, hub, "--set", "publish.max_shard_mb=0").exit_code == 0  # one row per shard
    many = {p for p in hub.repos["me/traj"].files if p.endswith(".parquet")}
    assert len(many) == 10
    result = _push(run, hub)
    assert result.exit_code == 0, result.output
    now = {p for p in hub.repos["me/traj"].files if p.endswith(".parquet")}
    assert now == {f"data/{s}/train-00000-of-00001.parquet" for s in SUBSETS}
    assert "deleted" in result.output and f"{len(many)} deleted" in result.output


def test_push_without_token_says_what_to_do_and_sends_nothing(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with FakeHub(TOKEN) as fake:
        result = _push(run, fake)
        assert result.exit_code == 2
        assert "HF_TOKEN" in result.output and "--dry-run" in result.output
        assert fake.requests == []


def test_publish_without_kept_set_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["publish", "--run", str(tmp_path / "empty"), "--repo", "me/x", "--dry-run"]
    )
    assert result.exit_code == 2 and "trajforge filter" in result.output

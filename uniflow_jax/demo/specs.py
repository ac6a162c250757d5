"""The demo corpus as a config lists it: one dataset per task and split (configs import this, not the synthesiser)."""

from __future__ import annotations

from uniflow_jax import tasks


def dataset_specs(root: str, split: str) -> list[dict]:
    """The seven datasets of one split of a corpus built at ``root``, as a config's ``data.train`` lists them."""
    return [
        {
            "task": task.short,
            "content": f"{root}/{split}/{task.short}/content.jsonl",
            "audio": f"{root}/{split}/{task.short}/audio.jsonl",
            "name": f"demo-{task.short}-{split}",
        }
        for task in tasks.TASKS
    ]

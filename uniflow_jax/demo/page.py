"""The demo's report as something to look at and listen to: ``report.html`` (open the file; no server) and
``report.png`` (one sheet: the first held-out item of every task).

Per task and item: the condition (caption, phones, score, the noisy or band-limited input, a strip of the video's
frames), audio players for the input, the reference, the codec's round trip of the reference and the generated
output, and their log-mel spectrograms side by side. The spectrograms of one item share one dB scale — the
reference's loudest bin — so an output that is too quiet looks too quiet. The page links the files where they
are (relative paths), so keep the demo's output folder together.
"""

from __future__ import annotations

import html
import os
import pathlib

import numpy as np
from PIL import Image

from uniflow_jax import tasks
from uniflow_jax.demo import report
from uniflow_jax.frontends.audio import SAMPLE_RATE
from uniflow_jax.training.metric_writers import colormap

HEIGHT, SECONDS_WIDTH = 80, 60  # spectrogram pixels: mel bands, and columns per second
INPUT_FIELD = {"se": "noisy_speech", "sr": "low_sr_audio"}
COLUMNS = ("input", "reference", "codec", "generated")


def mel_db(audio: np.ndarray) -> np.ndarray:
    """80-band mel power in dB (bands × frames), n_fft 1024, hop 256 (as the codec's log-mel distance)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(audio, np.float32), sr=SAMPLE_RATE, n_fft=1024, hop_length=256)
    return 10.0 * np.log10(mel + 1e-10)


def spectrogram_image(db: np.ndarray, seconds: float, top_db: float) -> Image.Image:
    """A log-mel spectrogram (``mel_db``) on the scale [top_db − 80, top_db] dB, low bands at the bottom."""
    pixels = colormap((db - (top_db - 80.0)) / 80.0)[::-1]
    width = max(8, round(seconds * SECONDS_WIDTH))
    return Image.fromarray(pixels).resize((width, HEIGHT), Image.Resampling.BILINEAR)


def _condition(item: report.Item) -> tuple[str, pathlib.Path | None]:
    """(text shown for the condition, an input audio or video file)."""
    if item.task in ("t2a", "t2m"):
        return f"caption: {item.content['caption']}", None
    if item.task == "tts":
        return "phones: " + " ".join(report.tts_entry(item)[0]), None
    if item.task == "svs":
        score = report.svs_score(item)
        notes = " ".join(report.midi_to_note(int(m)) for m in score["midi"])
        return f"phones: {score['phoneme']} | notes: {notes} | singer: {score['spk']}", None
    field = INPUT_FIELD.get(item.task, "video")
    return f"{field}: {item.content[field]}", (item.folder / item.content[field]).resolve()


def _frame_strip(video: pathlib.Path, out: pathlib.Path, count: int = 8) -> pathlib.Path:
    from uniflow_jax.frontends import video as video_io

    frames = video_io.read_frames(video)
    chosen = frames[np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int)]
    Image.fromarray(np.concatenate(list(chosen), axis=1)).save(out)
    return out


def write_page(
    result: dict,
    corpus: str | pathlib.Path,
    generated: str | pathlib.Path,
    out: str | pathlib.Path,
    *,
    codec: str | pathlib.Path | None = None,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Writes ``out`` (report.html), its images in ``<out stem>_files/`` and the sheet ``<out stem>.png``; returns
    (page, sheet). ``result`` is ``report.evaluate``'s; ``codec``: the folder of round trips (``<task>/<id>.wav``)."""
    out = pathlib.Path(out).resolve()
    files = out.with_name(out.stem + "_files")
    files.mkdir(parents=True, exist_ok=True)
    generated = pathlib.Path(generated).resolve()
    link = lambda path: html.escape(os.path.relpath(path, out.parent))  # noqa: E731
    body, sheet_rows = [], []
    for task in tasks.REPORT_ORDER:
        section = result["tasks"][task]
        body.append(f'<section id="{task}"><h2>{task} — {html.escape(tasks.get(task).id)}</h2>')
        verdict = "meets its bars" if section["meets_bars"] else "does not meet its bars"
        body.append(f'<p class="verdict {"met" if section["meets_bars"] else "unmet"}">{task} {verdict}</p>')
        body.append(_bars_table(section["bars"]))
        body.append("<details><summary>diagnostic figures</summary>" + _figures_table(section) + "</details>")
        items = report.load_items(corpus, task, split=result["split"], per_task=result["per_task"])
        for index, item in enumerate(items):
            text, source = _condition(item)
            paths = {
                "input": source if task in INPUT_FIELD else None,
                "reference": item.target,
                "codec": pathlib.Path(codec).resolve() / task / f"{item.id}.wav" if codec else None,
                "generated": generated / task / f"{item.id}.wav",
            }
            present = {k: p for k, p in paths.items() if p is not None and p.exists()}
            audio = {k: report.read_wav(p) for k, p in present.items()}
            db = {k: mel_db(a) for k, a in audio.items()}
            top = float(db["reference"].max())
            images = {k: spectrogram_image(db[k], len(a) / SAMPLE_RATE, top) for k, a in audio.items()}
            body.append(f'<div class="item" id="{html.escape(item.id)}"><h3>{html.escape(item.id)}</h3>')
            body.append(f'<p class="condition">{html.escape(text)}</p>')
            if task == "v2a" and source is not None:
                strip = _frame_strip(source, files / f"{item.id}_frames.png")
                body.append(f'<img class="frames" src="{link(strip)}" alt="video frames">')
            body.append('<div class="row">')
            for kind in COLUMNS:
                if kind not in images:
                    if kind != "input" or task in INPUT_FIELD:
                        body.append(f'<figure class="missing"><figcaption>{kind}: missing</figcaption></figure>')
                    continue
                image = files / f"{item.id}_{kind}.png"
                images[kind].save(image)
                body.append(
                    f'<figure class="{kind}"><figcaption>{kind}</figcaption><img src="{link(image)}" alt="{kind}">'
                    f'<audio controls preload="none" src="{link(present[kind])}"></audio></figure>'
                )
            body.append("</div></div>")
            if index == 0:
                sheet_rows.append((task, [images.get(kind) for kind in COLUMNS]))
        body.append("</section>")
    met = result["summary"]["tasks_meeting_bars"]
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>UniFlow-Audio demo report</title>
<style>body{{font-family:sans-serif;margin:1em 2em}} .row{{display:flex;gap:8px;flex-wrap:wrap}}
figure{{margin:0}} figure img{{display:block;height:{HEIGHT * 2}px}} .frames{{height:64px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
td.statement{{text-align:left}} img.broken{{outline:3px solid red}}</style>
<script>
// After loading: mark images that failed to load and record the counts (a headless browser test reads them).
window.addEventListener("error", (e) => {{
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message;
}});
window.addEventListener("load", () => {{
  const images = [...document.images], broken = images.filter((i) => !(i.complete && i.naturalWidth > 0));
  broken.forEach((i) => i.classList.add("broken"));
  document.body.dataset.images = `${{images.length - broken.length}}/${{images.length}}`;
}});
</script></head>
<body><h1>UniFlow-Audio demo report</h1>
<p class="summary">{len(met)} of {len(result["tasks"])} tasks meet their bars ({html.escape(", ".join(met) or "none")}).
Each bar is judged on the model's output, a fair baseline (the task's input, or other items' outputs judged
against this item's condition) and the codec's ceiling (the reference through the codec); a tie is not progress.
Spectrograms: 80-band log-mel, one dB scale per item (the reference's loudest bin = yellow, 80 dB below = dark).</p>
{"".join(body)}
</body></html>
"""
    out.write_text(page, encoding="utf-8")
    return out, _write_sheet(sheet_rows, out.with_suffix(".png"))


# (model's figure, baseline's figure) keys per figure kind (demo/report.py)
PAIRS = {
    "own_vs_mismatched": ("own", "mismatched"),
    "output_vs_input": ("output", "input"),
    "generated_vs_reference": ("generated", "reference"),
    "value": ("mean", None),
}


def _bars_table(entries: dict) -> str:
    rows = []
    for name, entry in entries.items():
        cells = "".join(f"<td>{html.escape(c)}</td>" for c in report.bar_cells(entry))
        why = entry.get("reason") or entry.get("note") or ""
        rows.append(
            f'<tr class="bar"><th>{html.escape(name)}</th><td class="statement">{html.escape(entry["statement"])}</td>'
            f"{cells}<td>{html.escape(entry['verdict'])}</td><td>{html.escape(why)}</td></tr>"
        )
    names = ("bar", "statement", "model", "baseline", "ceiling", "verdict", "")
    head = "<tr>" + "".join(f"<th>{name}</th>" for name in names) + "</tr>"
    return '<table class="bars">' + head + "".join(rows) + "</table>"


def _figures_table(section: dict) -> str:
    rows = []
    for name, figure in section["figures"].items():
        model, baseline = PAIRS[figure["kind"]]
        verdict = {True: "favours the model", False: "does not", None: ""}[figure.get("learned")]
        cells = [report.format_cell(figure.get(model)), report.format_cell(figure.get(baseline) if baseline else None)]
        rows.append(f"<tr><th>{html.escape(name)}</th><td>{cells[0]}</td><td>{cells[1]}</td><td>{verdict}</td></tr>")
    return "<table><tr><th>figure</th><th>model</th><th>baseline</th><th></th></tr>" + "".join(rows) + "</table>"


def _write_sheet(rows: list[tuple[str, list[Image.Image | None]]], path: pathlib.Path) -> pathlib.Path:
    """One row per task (input | reference | codec | generated), each cell scaled to a common width, labelled."""
    from PIL import ImageDraw

    cell_w, gap, label_w, head_h = 320, 6, 40, 16
    width = label_w + len(COLUMNS) * (cell_w + gap)
    sheet = Image.new("RGB", (width, head_h + max(1, len(rows)) * (HEIGHT + gap)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, kind in enumerate(COLUMNS):
        draw.text((label_w + c * (cell_w + gap) + 4, 2), kind, fill="black")
    for r, (task, row) in enumerate(rows):
        top = head_h + r * (HEIGHT + gap)
        draw.text((4, top + HEIGHT // 2 - 6), task, fill="black")
        for c, image in enumerate(row):
            if image is not None:
                sheet.paste(image.resize((cell_w, HEIGHT)), (label_w + c * (cell_w + gap), top))
    sheet.save(path)
    return path

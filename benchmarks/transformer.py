"""The transformer family: quality against TF-IDF, and inference speed per runtime.

Quality (`--part quality`): on the seeded split of the shared data that `toxiguard train` uses,
fits the TF-IDF families, `transformer` and `blend` (transformer + the best TF-IDF model by
validation ROC-AUC), tunes thresholds on validation and prints test ROC-AUC (mean and per
label) and macro F1 with the tuned thresholds. Trains on the full training part: about an
hour on 2 CPU cores, minutes on a GPU. Two more blends show where a gain comes from: the
transformer with every TF-IDF model, and the TF-IDF models without it (the control).
`--transformer-dir` scores a transformer saved by an earlier run (`--save-to`) instead.

Speed (`--part speed`): loads a saved transformer model (`--model-dir`) or fine-tunes a small
one first, then measures comments/s of PyTorch fp32, ONNX Runtime fp32 and ONNX Runtime int8
at batch 1 and batch 64, with 2 threads, on real comments of the shared data (so real lengths,
long ones windowed), through `predict_proba` (tokenisation included). The runtimes take turns
in every repetition; the table shows medians. It also prints the training throughput.

    python benchmarks/transformer.py --part speed                     # small fine-tune first
    python benchmarks/transformer.py --part speed --model-dir DIR     # a saved model
    python benchmarks/transformer.py --part quality --epochs 2 --max-length 128
    python benchmarks/transformer.py --part quality --transformer-dir SAVED/transformer
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SHARED_TRAIN = ROOT.parent / "shared" / "data" / "jigsaw" / "train.csv.gz"
RUNTIMES = ("torch", "onnx-fp32", "onnx-int8")
TFIDF_FAMILIES = ("tfidf-lr", "nbsvm", "tfidf-svm")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return a markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def transformer_params(args: argparse.Namespace) -> dict[str, Any]:
    """Return the transformer parameters given on the command line."""
    params: dict[str, Any] = {
        "epochs": args.epochs,
        "max_length": args.max_length,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "pos_weight": args.pos_weight,
        "progress": True,
    }
    if args.backbone:
        params["backbone"] = args.backbone
    return params


# ------------------------------------------------------------------------------- quality
def quality(args: argparse.Namespace) -> None:
    """Print test ROC-AUC and tuned macro F1 of TF-IDF, transformer and blend on one split."""
    from toxiguard.data.splits import split_dataset
    from toxiguard.data.validation import label_matrix, load_dataset
    from toxiguard.labels import LABELS
    from toxiguard.models import ToxicityModel, create_model, load_model
    from toxiguard.models.blend import BlendModel
    from toxiguard.settings import get_settings
    from toxiguard.training.evaluation import evaluate, tune_thresholds

    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    settings = get_settings()
    dataset = load_dataset(args.data)
    splits = split_dataset(
        dataset.frame,
        seed=settings.seed,
        validation_size=settings.validation_size,
        test_size=settings.test_size,
    )
    train, validation, test = splits.train, splits.validation, splits.test
    if args.limit:  # a dry run: a seeded subset of every part
        train = train.sample(n=min(args.limit, len(train)), random_state=0)
        validation = validation.sample(n=min(args.limit // 2, len(validation)), random_state=0)
        test = test.sample(n=min(args.limit // 2, len(test)), random_state=0)
    texts = {
        name: [str(t) for t in part["comment_text"]]
        for name, part in {"train": train, "validation": validation, "test": test}.items()
    }
    labels = {
        "train": label_matrix(train).astype(np.int64),
        "validation": label_matrix(validation).astype(np.int64),
        "test": label_matrix(test).astype(np.int64),
    }
    print(f"split: {len(train)} train / {len(validation)} validation / {len(test)} test rows\n")

    fitted: dict[str, ToxicityModel] = {}
    seconds: dict[str, float] = {}
    reports: dict[str, dict[str, Any]] = {}
    val_auc: dict[str, float] = {}

    def run(name: str, model: ToxicityModel, fit: bool = True) -> None:
        started = time.perf_counter()
        if fit:
            model.fit(
                texts["train"],
                labels["train"],
                validation=(texts["validation"], labels["validation"]),
            )
        seconds[name] = time.perf_counter() - started
        memoize_predictions(model)
        p_val = model.predict_proba(texts["validation"])
        thresholds = tune_thresholds(labels["validation"], p_val)
        val_auc[name] = float(evaluate(labels["validation"], p_val, thresholds)["mean_roc_auc"])
        reports[name] = evaluate(labels["test"], model.predict_proba(texts["test"]), thresholds)
        fitted[name] = model
        logging.info(
            "%s: test mean ROC-AUC %.4f (%.0f s)",
            name,
            reports[name]["mean_roc_auc"],
            seconds[name],
        )

    for family in args.tfidf:
        run(family, create_model(family))
    best_tfidf = max(args.tfidf, key=lambda name: val_auc[name])
    if args.transformer_dir:  # a transformer fitted earlier on this split (`--save-to`)
        run("transformer", load_model(args.transformer_dir), fit=False)
    else:
        run("transformer", create_model("transformer", **transformer_params(args)))
    blends = {"blend": ("transformer", best_tfidf)}
    if len(args.tfidf) > 1:
        # Controls: is a gain the transformer's, or would blending TF-IDF models give it too?
        blends["blend, all TF-IDF + transformer"] = ("transformer", *args.tfidf)
        blends["blend, TF-IDF only (control)"] = tuple(args.tfidf)
    for name, members in blends.items():
        estimators = [(member, fitted[member]) for member in members]
        run(name, BlendModel(estimators=estimators, prefit=list(members)))
    if args.save_to:  # keep the fitted models, e.g. for `--part speed --model-dir`
        for name in ("transformer", "blend"):
            fitted[name].save(Path(args.save_to) / name)
        print(f"models saved under {args.save_to}\n")

    header = ["model", "mean ROC-AUC", *LABELS, "macro F1 (tuned)", "fit s"]
    rows = []
    for name, report in reports.items():
        per_label = [
            f"{report['per_label'][label]['roc_auc'] or float('nan'):.4f}" for label in LABELS
        ]
        marker = " (best TF-IDF)" if name == best_tfidf else ""
        rows.append(
            [
                f"{name}{marker}",
                f"{report['mean_roc_auc']:.4f}",
                *per_label,
                f"{report['f1_macro_tuned']:.4f}",
                f"{seconds[name]:.0f}",
            ]
        )
    print(table(header, rows))
    print(
        "\nF1 and thresholds depend on the positive rate; the shared data over-represents "
        "toxic comments (see its PROVENANCE.md). Blend fit seconds exclude its members"
        + ("; the transformer was loaded, not fitted, here." if args.transformer_dir else ".")
    )
    transformer = fitted["transformer"]
    report_items = getattr(transformer, "export_report_", {}).items()
    print("\nexport parity (validation split):", {k: v for k, v in report_items})
    history = getattr(transformer, "history_", [])
    if history:
        rate = statistics.median(h["train_samples_per_s"] for h in history)
        print(f"training throughput: {rate:.1f} samples/s (median over epochs)")


def memoize_predictions(model: Any) -> None:
    """Make the fitted model compute its predictions on a given list of texts only once.

    The blends score their members on the same validation and test texts again; the
    transformer takes minutes for each pass on 2 cores.
    """
    predict = model.predict_proba
    cache: dict[int, Any] = {}

    def cached(texts: Sequence[str]) -> Any:
        key = hash(tuple(texts))
        if key not in cache:
            cache[key] = predict(texts)
        return cache[key]

    model.predict_proba = cached


# --------------------------------------------------------------------------------- speed
def real_comments(count: int, seed: int) -> list[str]:
    """Return `count` seeded real comments of the shared data."""
    frame = pd.read_csv(SHARED_TRAIN, usecols=["comment_text"], keep_default_na=False)
    return [str(t) for t in frame["comment_text"].sample(n=count, random_state=seed)]


def small_model(args: argparse.Namespace, directory: Path) -> Path:
    """Fine-tune the transformer on a few hundred shared rows; return where it was saved."""
    from toxiguard.labels import LABELS
    from toxiguard.models import create_model

    frame = pd.read_csv(SHARED_TRAIN, dtype={"id": str}, keep_default_na=False)
    rows = frame.sample(n=args.train_rows + 400, random_state=1)
    labels = rows[list(LABELS)].to_numpy()
    texts = [str(t) for t in rows["comment_text"]]
    cut = args.train_rows
    # Keep the int8 model whatever its parity on this small validation split: it is timed here,
    # and the parity numbers are printed with the table.
    params = {**transformer_params(args), "epochs": 1, "max_auc_loss": 1.0}
    model = create_model("transformer", **params)
    model.fit(texts[:cut], labels[:cut], validation=(texts[cut:], labels[cut:]))
    return model.save(directory / "model")


def throughput(model: Any, comments: list[str], batch: int, budget_s: float) -> float:
    """Return comments/s of `predict_proba` over consecutive batches, within a time budget."""
    done, started = 0, time.perf_counter()
    for start in range(0, len(comments), batch):
        model.predict_proba(comments[start : start + batch])
        done += len(comments[start : start + batch])
        if time.perf_counter() - started > budget_s:
            break
    return done / (time.perf_counter() - started)


def speed(args: argparse.Namespace) -> None:
    """Print comments/s per runtime at batch 1 and 64 (2 threads), medians of repetitions."""
    import torch

    from toxiguard.models import load_model
    from toxiguard.models.transformer.model import ONNX_FILES, TransformerModel

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="toxiguard-bench-") as tmp:
        directory = Path(args.model_dir) if args.model_dir else small_model(args, Path(tmp))
        if args.save_to and not args.model_dir:
            shutil.copytree(directory, args.save_to, dirs_exist_ok=True)
        model = load_model(directory)
        assert isinstance(model, TransformerModel), f"{directory} is not a transformer model"
        model.set_params(onnx_threads=args.threads)
        comments = real_comments(args.comments, seed=args.seed)
        windows = model._windows(comments)
        tokens = [len(ids) for ids in model._encode_texts(comments)]
        print(f"model: {directory}")
        print(
            f"comments: {len(comments)} real comments, median {int(np.median(tokens))} tokens, "
            f"{len(windows.ids)} windows of <= {model.max_length} tokens\n"
        )
        results: dict[tuple[str, int], list[float]] = {}
        runtimes = [r for r in RUNTIMES if r == "torch" or (directory / ONNX_FILES[r]).is_file()]
        for runtime in runtimes:  # warm up every session once
            model.use_runtime(runtime)
            model.predict_proba(comments[:8])
        for repetition in range(args.repetitions):
            for runtime in runtimes:
                model.use_runtime(runtime)
                model.predict_proba(comments[:2])
                for batch in (1, 64):
                    subset = comments if batch > 1 else comments[: args.single_comments]
                    rate = throughput(model, subset, batch, args.budget)
                    results.setdefault((runtime, batch), []).append(rate)
            logging.info("repetition %d/%d done", repetition + 1, args.repetitions)
        base = statistics.median(results[("torch", 64)])
        rows = []
        for runtime in runtimes:
            one = statistics.median(results[(runtime, 1)])
            many = statistics.median(results[(runtime, 64)])
            rows.append([runtime, f"{one:.1f}", f"{many:.1f}", f"{many / base:.2f}x"])
        print(
            table(
                ["runtime", "batch 1 comments/s", "batch 64 comments/s", "batch 64 vs torch"], rows
            )
        )
        print(
            f"\n{args.threads} threads, medians of {args.repetitions} repetitions "
            f"(each at most {args.budget:.0f} s per cell)."
        )
        report = getattr(model, "export_report_", {})
        print("export parity (validation split):", report)
        history = getattr(model, "history_", [])
        if history:
            print(
                f"training throughput: {history[-1]['train_samples_per_s']:.1f} samples/s "
                f"(max_length {model.max_length}, batch {model.batch_size})"
            )


def main() -> None:
    """Parse the command line and run the chosen parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("quality", "speed", "all"), default="speed")
    parser.add_argument("--data", default=str(SHARED_TRAIN))
    parser.add_argument(
        "--limit",
        type=int,
        default=0,
        help="dry run: train rows, half as many validation and test rows (0: all)",
    )
    parser.add_argument("--tfidf", nargs="+", default=list(TFIDF_FAMILIES))
    parser.add_argument(
        "--transformer-dir",
        default=None,
        help="quality: load this saved transformer (fitted on the same split, e.g. by an earlier "
        "run's --save-to) instead of fitting one",
    )
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)  # the model's default
    parser.add_argument("--pos-weight", default="sqrt-balanced")  # the model's default
    parser.add_argument(
        "--model-dir", default=None, help="saved transformer model for --part speed"
    )
    parser.add_argument("--train-rows", type=int, default=400, help="fine-tune rows for speed")
    parser.add_argument(
        "--save-to",
        default=None,
        help="keep the fitted models (quality: transformer and blend; speed: the small fine-tune)",
    )
    parser.add_argument("--comments", type=int, default=512)
    parser.add_argument("--single-comments", type=int, default=128)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per cell at most")
    parser.add_argument("--threads", type=int, default=2, help="inference threads for speed")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="PyTorch threads for the quality part's training (0: PyTorch's default); 1 is "
        "often faster when other jobs share the cores",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    if args.part in ("quality", "all"):
        quality(args)
    if args.part in ("speed", "all"):
        speed(args)


if __name__ == "__main__":
    main()

"""`relaxprune`: the command line for saved models.

    relaxprune count MODEL.keras [--input-shape 360 480 3]
    relaxprune report GATED.keras [--dense DENSE.keras] [--out DIR]
    relaxprune strip GATED.keras OUT_DIR [--threshold 0.05] [--formats keras tflite]
"""

import argparse
import json
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="relaxprune", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    count = commands.add_parser("count", help="params and FLOPs of a .keras model")
    count.add_argument("model")
    count.add_argument("--input-shape", type=int, nargs="+", default=None)
    report = commands.add_parser("report", help="per-layer table of a gated model")
    report.add_argument("model")
    report.add_argument("--dense", default=None, help="compare with this dense model")
    report.add_argument("--json", action="store_true", help="print JSON, not a table")
    report.add_argument("--out", default=None, metavar="DIR", help=(
        "also write pruning_report.json/.md, channels_kept.png and "
        "cost_per_stage.png into DIR (e.g. next to an exported model)"))
    strip = commands.add_parser("strip", help="strip a gated model and export it")
    strip.add_argument("model")
    strip.add_argument("out_dir")
    strip.add_argument("--threshold", type=float, default=None)
    strip.add_argument("--formats", nargs="+", default=["keras", "saved_model", "tflite"])
    return parser


def main(argv=None):
    """Entry point of the `relaxprune` command; returns the exit status."""
    args = _parser().parse_args(argv)
    import keras  # noqa: PLC0415 (slow import, only once the arguments are valid)

    import keras_relaxprune as krp  # noqa: PLC0415

    model = keras.saving.load_model(args.model)
    if args.command == "count":
        flops = krp.count_flops(model, input_shape=args.input_shape)
        print(json.dumps({"params": krp.count_params(model), "flops": flops}))
    elif args.command == "report":
        dense = keras.saving.load_model(args.dense) if args.dense else None
        report = krp.pruning_report(dense, model) if dense else krp.pruning_report(model)
        print(report.to_json(indent=1) if args.json else report)
        if args.out:
            from keras_relaxprune.charts import write_report_files  # noqa: PLC0415

            before = dense if dense is not None else model
            written = write_report_files(report, before, args.out)
            print(json.dumps({"written": written}), file=sys.stderr)
    else:
        small = krp.strip_pruning(model, threshold=args.threshold)
        written = krp.export(small, args.out_dir, formats=tuple(args.formats),
                             pruned_from=model)
        print(json.dumps({"params": krp.count_params(small),
                          "flops": krp.count_flops(small), "written": written}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Prints a markdown table of the results.json of the given run directories.

  python scripts/results_table.py runs/mnist_cnn runs/mnist_mlp
"""
import json
import os
import sys


def main(workdirs):
  print("| run | model | parallelism | devices | steps | test accuracy | test loss | train accuracy | params | train seconds |")
  print("|---|---|---|---|---|---|---|---|---|---|")
  for w in workdirs:
    path = os.path.join(w, "results.json")
    if not os.path.exists(path):
      sys.exit(f"error: {path} does not exist (run the experiment first)")
    r = json.load(open(path))
    print(f"| `{w}` | {r['model']} | {r['parallelism']} | {r['num_devices']} | {r['steps']} | "
          f"{100 * r['test_accuracy']:.2f}% | {r['test_loss']:.4f} | "
          f"{100 * r.get('train_accuracy', float('nan')):.2f}% | {r['num_params']:,} | "
          f"{r['train_seconds']:.0f} |")


if __name__ == "__main__":
  main(sys.argv[1:])

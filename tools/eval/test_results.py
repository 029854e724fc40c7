#!/usr/bin/env python3
"""Tests of results.py's shard bookkeeping, with a stand-in for skv-eval that writes the same JSON lines.

    python3 tools/eval/test_results.py      (ctest: eval_results_py)
"""
import json
import os
import stat
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import results  # noqa: E402

# Answers every item of --range for every --policy, fraction and protocol; an item's score is a function of
# (policy, index), so a merged page can be checked. Appends its --policy to $FAKE_LOG; exits 3 when $FAKE_FAIL
# names the --range.
FAKE_EVAL = r'''#!/usr/bin/env python3
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(args["--policy"] + " " + args["--range"] + "\n")
if os.environ.get("FAKE_FAIL") == args["--range"]:
    print("half a line", flush=True)
    sys.exit(3)
first, last = map(int, args["--range"].split(":"))
for proto in args["--protocol"].split(","):
    for pol in args["--policy"].split(","):
        for frac in [None] if pol == "full_kv" else [float(x) for x in args["--budget-frac"].split(",")]:
            for i in range(first, last):
                score = 1.0 if pol == "full_kv" or (i + len(pol)) % 2 == 0 else 0.0
                print(json.dumps({"task": args["--task"], "length": int(args["--length"]), "seed": int(args["--seed"]),
                                  "haystack": args["--haystack"], "kv_dtype": args["--kv-dtype"], "protocol": proto,
                                  "policy": pol, "budget_fraction": frac,
                                  "budget": None if frac is None else round(frac * 1000), "index": i,
                                  "items_total": int(args["--limit"]), "score": score, "prompt_tokens": 1000,
                                  "item_seconds": 1.0, "forward_seconds": 0.5, "step_seconds": 0.1,
                                  "decode_steps": 10, "fast_bytes": 1.0, "slow_bytes": 0.0}))
            print(json.dumps({"summary": True, "protocol": proto, "policy": pol, "budget_fraction": frac}))
'''


class ShardBookkeeping(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        self.out = os.path.join(d, "grid")
        os.makedirs(self.out)
        self.eval = os.path.join(d, "fake-eval")
        with open(self.eval, "w") as f:
            f.write(FAKE_EVAL)
        os.chmod(self.eval, os.stat(self.eval).st_mode | stat.S_IXUSR)
        self.log = os.path.join(d, "calls.log")
        open(self.log, "w").close()
        with open(os.path.join(d, "hay.txt"), "w") as f:
            f.write("text\n")
        os.environ["FAKE_LOG"] = self.log
        os.environ.pop("FAKE_FAIL", None)

    def tearDown(self):
        self.dir.cleanup()

    def argv(self, policies):
        return ["--out", self.out, "--eval", self.eval, "--haystack", os.path.join(self.dir.name, "hay.txt"),
                "--tasks", "niah_single", "--contexts", "4096", "--items", "4", "--shard", "2",
                "--policies", policies, "--fractions", "0.0625,0.125",
                "--docs", os.path.join(self.dir.name, "r.md"), "--img", os.path.join(self.dir.name, "img")]

    def args(self, policies):
        return results.parse_args(self.argv(policies))

    def calls(self):
        with open(self.log) as f:
            lines = f.read().split("\n")[:-1]
        open(self.log, "w").close()
        return lines

    def cell(self, rows, policy, fraction=None, protocol="prefill"):
        m = [r for r in rows if r["policy"] == policy and r["protocol"] == protocol and
             r["budget_fraction"] == fraction]
        self.assertEqual(len(m), 1, f"{policy} {fraction} {protocol}")
        return m[0]

    def test_a_new_policy_runs_alone_beside_the_old_shards(self):
        a = self.args("full_kv,alpha")
        results.run(a)
        self.assertEqual(self.calls(), ["full_kv,alpha 0:2", "full_kv,alpha 2:4"])
        results.run(a)
        self.assertEqual(self.calls(), [], "complete shards are reused")

        a = self.args("full_kv,alpha,beta")
        results.run(a)
        self.assertEqual(self.calls(), ["beta 0:2", "beta 2:4"])
        self.assertTrue(os.path.exists(os.path.join(self.out, "niah_single_4096.0-2+beta.jsonl")))
        results.run(a)
        self.assertEqual(self.calls(), [])

        rows = results.load(a)
        for pol, frac in (("full_kv", None), ("alpha", 0.0625), ("beta", 0.125)):
            for proto in ("prefill", "question_after"):
                self.assertEqual(self.cell(rows, pol, frac, proto)["items"], 4)
        # the fake's scores: alpha (len 5) right on odd items, beta (len 4) on even ones
        self.assertEqual(self.cell(rows, "alpha", 0.125)["correct"], 2)
        self.assertEqual(self.cell(rows, "full_kv")["correct"], 4)

    def test_a_renamed_preset_reruns_and_both_are_kept(self):
        results.run(self.args("full_kv,alpha"))
        self.calls()
        results.main(["--rename", "alpha=alpha-old", "--table-only"] + self.argv("full_kv"))
        results.run(self.args("full_kv,alpha"))
        self.assertEqual(self.calls(), ["alpha 0:2", "alpha 2:4"])
        rows = results.load(self.args("full_kv,alpha"))
        self.assertEqual(self.cell(rows, "alpha-old", 0.0625)["items"], 4)
        self.assertEqual(self.cell(rows, "alpha", 0.0625)["items"], 4)
        self.assertEqual(sum(r["policy"] == "alpha-old" for r in rows), 4)  # 2 fractions x 2 protocols

    def test_a_failed_run_leaves_no_shard_and_is_rerun(self):
        os.environ["FAKE_FAIL"] = "2:4"
        results.run(self.args("full_kv,alpha"))
        self.assertEqual(self.calls(), ["full_kv,alpha 0:2", "full_kv,alpha 2:4"])
        self.assertFalse(os.path.exists(os.path.join(self.out, "niah_single_4096.2-4.jsonl")))
        del os.environ["FAKE_FAIL"]
        results.run(self.args("full_kv,alpha"))
        self.assertEqual(self.calls(), ["full_kv,alpha 2:4"])

    def test_bad_rename_is_refused(self):
        for bad in ("alpha", "=beta", "alpha=alpha"):
            with self.assertRaises(SystemExit) as e:
                results.main(["--rename", bad, "--table-only"] + self.argv("full_kv"))
            self.assertIn(repr(bad), str(e.exception))


if __name__ == "__main__":
    unittest.main()

python3 tools/eval/long_context.py --task niah_single --length 16384 --items 10 --shard 5 --policies full_kv,sentence_kv_lossless,snap_kv --fractions 0.0625,0.125

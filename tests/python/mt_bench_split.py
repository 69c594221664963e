#!/usr/bin/env python3
"""Text for the fine-tuning tests, unlike TinyStories: MT-Bench questions
split into DIR/train.txt and DIR/held.txt (every 4th question held out, each
turn one document): mt_bench_split.py question.jsonl DIR"""
import json, sys
tr, ho = open(sys.argv[2] + "/train.txt", "w"), open(sys.argv[2] + "/held.txt", "w")
for line in open(sys.argv[1]):
    q = json.loads(line)
    for t in q["turns"]:
        (ho if q["question_id"] % 4 == 0 else tr).write(t.strip() + "\n\n")

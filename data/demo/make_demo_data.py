#!/usr/bin/env python3
"""Writes the demo fine-tuning set: short TinyStories-style texts that all
tell of Bolt, a little robot, so a fine-tune of stories260K visibly changes
what the model writes after "Once upon a time". Deterministic (seed 7).
Run: python3 data/demo/make_demo_data.py   (writes train/valid/test.jsonl here)"""
import json
import os
import random

rng = random.Random(7)
places = ["a big red box", "a small blue house", "the toy shop", "a sunny garden", "the old barn", "a quiet park"]
friends = ["a cat named Tom", "a girl named Lily", "a boy named Ben", "a dog named Max", "a bird named Sue"]
likes = ["fix broken toys", "help his friends", "clean the floor", "count the stars", "sing happy songs", "plant flowers"]
events = ["found a lost ball", "saw a sad puppy", "heard a loud noise", "met a new friend", "lost his red hat"]
ends = ["Bolt was very happy.", "They played all day.", "Bolt smiled and said thank you.",
        "From that day on, they were best friends.", "Bolt learned to always help others."]


def story():
    p, f, l, e, n = (rng.choice(x) for x in (places, friends, likes, events, ends))
    return (f"Once upon a time, there was a little robot named Bolt. Bolt lived in {p}. "
            f"Bolt loved to {l}. One day, Bolt {e}. Bolt went to {f} and asked for help. {n}")


here = os.path.dirname(os.path.abspath(__file__))
for name, n in (("train", 64), ("valid", 8), ("test", 8)):
    with open(os.path.join(here, f"{name}.jsonl"), "w") as fh:
        for _ in range(n):
            fh.write(json.dumps({"text": story()}) + "\n")

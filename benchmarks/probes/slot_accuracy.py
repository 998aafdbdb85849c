"""Where does SFT on the grid profile stall? Teacher-forced next-token accuracy of every supervised
token of held-out oracle trajectories, printed for the tokens still below 97% (``weak``).

Trains the learning profile's tiny model (``mini-o3 tiny-model --profile learn --out runs/probe-model``)
directly with torch (AdamW, clip 1.0, loss on every assistant token as LLaMA-Factory's SFT) on ``n``
grid trajectories built by the same oracle and chat template as the cold-start data. Options as
``key=value``: n, steps, lr, bs, model, strat (oracle strategy), sys (0 drops the system prompt),
one_turn (1: only one random assistant turn of each row is in the loss, as ``mask_history`` on per-turn rows).
Figures: benchmarks/RESULTS.md, "Learning profile". Not a test.
"""
import sys, time, math, random, json, os
import torch, numpy as np
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from mini_o3.data.synthetic import SynthConfig, make_item
from mini_o3.data.synthetic.writers import oracle_rollouts
from mini_o3.tiny import protocol_phrases

args = dict(a.split("=") for a in sys.argv[1:])
N_TRAIN = int(args.get("n", 640)); STEPS = int(args.get("steps", 300)); LR = float(args.get("lr", 3e-3)); BS = int(args.get("bs", 8))
MODEL = args.get("model", "runs/probe-model"); STRAT = args.get("strat", "zoom"); SYS = args.get("sys", "1") == "1"
ONE_TURN = args.get("one_turn", "0") == "1"  # one random assistant turn per row in the loss (history masked)
torch.manual_seed(0); random.seed(0)
proc = AutoProcessor.from_pretrained(MODEL)
proc.image_processor.min_pixels = 3136; proc.image_processor.max_pixels = 12544
try:
    proc.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12544}
except Exception: pass
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(MODEL, torch_dtype=torch.float32)
if args.get("mean_phrases", "0") == "1":  # phrase-token rows at the mean of the other rows (HF's resize rule)
    _ids = proc.tokenizer.convert_tokens_to_ids(protocol_phrases())
    _emb = model.get_input_embeddings().weight
    with torch.no_grad():
        _keep = torch.ones(_emb.shape[0], dtype=torch.bool); _keep[_ids] = False
        _emb[_ids] = _emb[_keep].mean(0) + 1e-3 * torch.randn(len(_ids), _emb.shape[1])
PHRASES = args.get("phrases", "0") == "1"  # the protocol's fixed strings as single added tokens (resized rows)
if PHRASES:  # the same strings the learn model has as tokens (tiny.protocol_phrases), added to a model without them
    from tokenizers import AddedToken
    proc.tokenizer.add_tokens([AddedToken(p, normalized=False, special=False) for p in protocol_phrases()])
    model.resize_token_embeddings(len(proc.tokenizer))
cfg = SynthConfig(family="grid", width_range=(448,448), height_range=(448,448), coldstart_strategies=(STRAT,), coldstart_pixels=(3136,12544), coldstart_rollouts=1)
tok = proc.tokenizer

def build(seed, one_turn=False):
    item = make_item(cfg, seed, f"s{seed}", "x.png")
    (_, t), = oracle_rollouts(item, [STRAT], 0, cfg)
    conv = t.to_sharegpt()
    msgs, images = [], list(t.images)
    for m in conv:
        role = {"system": "system", "human": "user", "gpt": "assistant"}[m["from"]]
        if role == "system" and not SYS: continue
        v = m["value"]
        if "<image>" in v:
            parts = v.split("<image>"); content = []
            for i, p in enumerate(parts):
                if i: content.append({"type": "image"})
                if p: content.append({"type": "text", "text": p})
        else:
            content = [{"type": "text", "text": v}]
        msgs.append({"role": role, "content": content})
    text = proc.apply_chat_template(msgs, tokenize=False)
    enc = proc(text=[text], images=images, return_tensors="pt")
    ids = enc["input_ids"][0]
    labels = torch.full_like(ids, -100)
    # assistant spans
    start_ids = tok.encode("<|im_start|>assistant\n"); end_id = tok.convert_tokens_to_ids("<|im_end|>")
    L = len(start_ids); i = 0; il = ids.tolist(); spans = []
    while i < len(il):
        if il[i:i+L] == start_ids:
            j = i + L
            while il[j] != end_id: j += 1
            spans.append((i+L, j+1)); i = j
        i += 1
    for a, b in (spans if not one_turn else [random.Random(seed).choice(spans)]):
        labels[a:b] = ids[a:b]
    # slot positions: tokens of the assistant text that differ across items -> mark by text
    outs = t.model_outputs
    return dict(enc=enc, labels=labels, meta=item.meta, outs=outs)

t0 = time.time()
train = [build(s, ONE_TURN) for s in range(N_TRAIN)]
test = [build(100000 + s) for s in range(64)]
print(f"built {len(train)}+{len(test)} in {time.time()-t0:.0f}s; seq len {train[0]['enc']['input_ids'].shape[1]}", flush=True)

def collate(batch):
    T = max(b["enc"]["input_ids"].shape[1] for b in batch)
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    ids = torch.full((len(batch), T), pad); att = torch.zeros((len(batch), T), dtype=torch.long); lab = torch.full((len(batch), T), -100)
    for k, b in enumerate(batch):
        n = b["enc"]["input_ids"].shape[1]
        ids[k, :n] = b["enc"]["input_ids"][0]; att[k, :n] = 1; lab[k, :n] = b["labels"]
    pv = torch.cat([b["enc"]["pixel_values"] for b in batch]); thw = torch.cat([b["enc"]["image_grid_thw"] for b in batch])
    return dict(input_ids=ids, attention_mask=att, labels=lab, pixel_values=pv, image_grid_thw=thw)

def slot_acc(data):
    """per assistant token: accuracy of greedy next-token; grouped by position of supervised tokens which vary across items"""
    model.eval(); res = {}
    with torch.no_grad():
        for k in range(0, len(data), 16):
            batch = data[k:k+16]; b = collate(batch)
            logits = model(**{x: b[x] for x in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}).logits
            pred = logits[:, :-1].argmax(-1); gold = b["labels"][:, 1:]
            for r in range(len(batch)):
                idx = (gold[r] != -100).nonzero().flatten().tolist()
                for n, p in enumerate(idx):
                    res.setdefault(n, []).append(int(pred[r, p] == gold[r, p]))
    model.train()
    # report only the positions with < 100% accuracy
    toks = [tok.decode([t]) for t in test[0]["labels"][test[0]["labels"] != -100].tolist()]
    acc = {n: sum(v)/len(v) for n, v in res.items()}
    seq_ok = None
    return acc, toks

opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
model.train(); t0 = time.time()
order = []
for step in range(1, STEPS + 1):
    if not order: order = random.sample(range(len(train)), len(train))
    batch = [train[order.pop()] for _ in range(min(BS, len(order) or BS))]
    b = collate(batch)
    out = model(**b); out.loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
    if step % 50 == 0:
        acc, toks = slot_acc(test)
        weak = {f"{n}:{toks[n]!r}": round(a, 2) for n, a in acc.items() if a < 0.97 and n < len(toks)}
        print(f"step {step} loss {out.loss.item():.3f} {time.time()-t0:.0f}s weak {weak}", flush=True)

"""Can the tiny model read a glyph at all? The grid oracle's view ``view`` (2 = the cell crop)
alone, "What shape?" → the shape word, cross-entropy on that one token; held-out accuracy over the
four shapes every 25 steps. Options: lr, steps, view, bs, model. Figures: RESULTS.md. Not a test.
"""
import sys, time, random, torch
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
from mini_o3.data.synthetic import SynthConfig, make_item
from mini_o3.data.synthetic.writers import oracle_rollouts
args = dict(a.split("=") for a in sys.argv[1:])
LR = float(args.get("lr", 1e-3)); STEPS = int(args.get("steps", 200)); VIEW = int(args.get("view", 2)); BS = int(args.get("bs", 8))
MODEL = args.get("model", "runs/probe-model")
torch.manual_seed(0); random.seed(0)
proc = AutoProcessor.from_pretrained(MODEL)
proc.image_processor.min_pixels = 3136; proc.image_processor.max_pixels = 12544
model = Qwen2_5_VLForConditionalGeneration.from_pretrained(MODEL, torch_dtype=torch.float32)
cfg = SynthConfig(family="grid", width_range=(448,448), height_range=(448,448), coldstart_strategies=("zoom",), coldstart_pixels=(3136,12544), coldstart_rollouts=1)
tok = proc.tokenizer
def build(seed):
    item = make_item(cfg, seed, f"s{seed}", "x.png")
    (_, t), = oracle_rollouts(item, ["zoom"], 0, cfg)
    img = t.images[VIEW]
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What shape?"}]}]
    text = proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) + "It is a"
    enc = proc(text=[text], images=[img], return_tensors="pt")
    gold = tok.encode(" " + item.meta.answer)[0]
    return enc, gold
train = [build(s) for s in range(640)]; test = [build(100000 + s) for s in range(128)]
golds = sorted({g for _, g in train})
def run(batch):
    ids = torch.cat([e["input_ids"] for e, _ in batch]); pv = torch.cat([e["pixel_values"] for e, _ in batch]); thw = torch.cat([e["image_grid_thw"] for e, _ in batch])
    return model(input_ids=ids, pixel_values=pv, image_grid_thw=thw).logits[:, -1]
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0); t0 = time.time()
for step in range(1, STEPS + 1):
    batch = random.sample(train, BS)
    loss = torch.nn.functional.cross_entropy(run(batch), torch.tensor([g for _, g in batch]))
    loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad()
    if step % 25 == 0:
        with torch.no_grad():
            acc = sum(int(run(test[i:i+32])[:, golds].argmax(-1).eq(torch.tensor([golds.index(g) for _, g in test[i:i+32]])).sum()) for i in range(0, 128, 32)) / 128
        print(f"view {VIEW} lr {LR} step {step} loss {loss.item():.3f} acc {acc:.2f} {time.time()-t0:.0f}s", flush=True)

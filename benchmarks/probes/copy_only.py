"""Can the tiny model copy a block name into box coordinates? Text "<think>Zoom in on the X
block.</think><grounding>{"bbox_2d": " → the box of X; ``all=1`` puts every token in the loss
(the thought's name too, as SFT does), ``img=1`` prepends a blank image through the processor.
Accuracy is over the box tokens only. Options: img, all, lr. Figures: RESULTS.md. Not a test.
"""
import sys, time, random, torch
from PIL import Image
from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration
args = dict(a.split("=") for a in sys.argv[1:]); IMG = args.get("img", "1") == "1"; ALL = args.get("all", "0") == "1"; LR = float(args.get("lr", 1e-3))
torch.manual_seed(0); random.seed(0)
proc = AutoProcessor.from_pretrained("runs/probe-model"); proc.image_processor.min_pixels = 3136; proc.image_processor.max_pixels = 12544
tok = proc.tokenizer
model = Qwen2_5_VLForConditionalGeneration.from_pretrained("runs/probe-model", torch_dtype=torch.float32)
names = ["north-west", "north-east", "south-west", "south-east"]; boxes = ["[0.0, 0.0, 0.5, 0.5]", "[0.5, 0.0, 1.0, 0.5]", "[0.0, 0.5, 0.5, 1.0]", "[0.5, 0.5, 1.0, 1.0]"]
img = Image.new("RGB", (112, 112), (220, 220, 220))
def sample():
    q = random.randrange(4)
    pre = "<|vision_start|><|image_pad|><|vision_end|>" if IMG else ""
    prompt = f"{pre}<think>Zoom in on the {names[q]} block.</think>\n<grounding>{{\"bbox_2d\": "
    enc = proc(text=[prompt], images=[img] if IMG else None, return_tensors="pt")
    t = tok.encode(boxes[q]); ids = torch.cat([enc["input_ids"][0], torch.tensor(t)])
    lab = ids.clone() if ALL else torch.cat([torch.full_like(enc["input_ids"][0], -100), torch.tensor(t)])
    box = torch.cat([torch.full_like(enc['input_ids'][0], -100), torch.tensor(t)])
    return ids, lab, enc, box
def batch(n):
    b = [sample() for _ in range(n)]
    kw = dict(input_ids=torch.stack([x[0] for x in b]))
    if IMG: kw.update(pixel_values=torch.cat([x[2]["pixel_values"] for x in b]), image_grid_thw=torch.cat([x[2]["image_grid_thw"] for x in b]))
    return kw, torch.stack([x[1] for x in b]), torch.stack([x[3] for x in b])
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0); t0 = time.time()
for step in range(1, 201):
    kw, lab, _ = batch(8); out = model(**kw, labels=lab); out.loss.backward(); opt.step(); opt.zero_grad()
    if step % 25 == 0:
        with torch.no_grad():
            kw, _, lab = batch(64); pred = model(**kw).logits[:, :-1].argmax(-1); gold = lab[:, 1:]; m = gold != -100
            acc = ((pred == gold) | ~m).all(1).float().mean().item()
        print(f"img {IMG} step {step} loss {out.loss.item():.3f} seq-acc {acc:.2f} {time.time()-t0:.0f}s", flush=True)

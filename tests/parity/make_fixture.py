"""Make the parity fixture with the authors' own stack (mmdet 2.28.2,
mmsegmentation 0.30.0, mmcv-full 1.7.2 and their object_detection/ and
semantic_segmentation/ code). Run by ``tests/parity/authors_stack.sh``, in
its side environment, never by the test suite or CI:

    python tests/parity/make_fixture.py AUTHORS_REPO COCO_SAMPLE OUT.tar.xz

For RetinaNet-T, Mask R-CNN-T and Semantic FPN-T (their configs, TransXNet-T
as in the paper; the neck and heads narrowed by ``NARROW`` so that the
fixture stays small) it draws deterministic random weights in which every
part counts, saves each model as their training does (``meta``,
``state_dict``, ``optimizer``) under the names of their released files, and
records with their API:
- the raw outputs on a fixed input (backbone and neck features, the head's
  maps), and
- the final predictions on the real COCO sample images (boxes, scores,
  labels, masks as RLE; label maps).
Everything goes into one xz archive (the three files share the backbone's
bytes, which xz's window finds) with ``manifest.json``.
"""
import argparse
import io
import json
import os
import os.path as osp
import sys
import tarfile
import tempfile

import numpy as np
import torch

SEED = 20261206
RAW_INPUT = (1, 3, 96, 128)  # the fixed input of the raw outputs
# The same settings in their configs and ours (the tests apply them to ours).
NARROW = {
    'retinanet': {
        'model.neck.out_channels': 64,
        'model.bbox_head.in_channels': 64,
        'model.bbox_head.feat_channels': 64,
    },
    'mask_rcnn': {
        'model.neck.out_channels': 64,
        'model.rpn_head.in_channels': 64,
        'model.rpn_head.feat_channels': 64,
        'model.roi_head.bbox_roi_extractor.out_channels': 64,
        'model.roi_head.bbox_head.in_channels': 64,
        'model.roi_head.bbox_head.fc_out_channels': 128,
        'model.roi_head.mask_roi_extractor.out_channels': 64,
        'model.roi_head.mask_head.in_channels': 64,
        'model.roi_head.mask_head.conv_out_channels': 64,
    },
    'sfpn': {
        'model.neck.out_channels': 64,
        'model.decode_head.in_channels': [64, 64, 64, 64],
        'model.decode_head.channels': 32,
    },
}
# Their config, the name of their released file, our config.
MODELS = {
    'retinanet': ('object_detection/configs/retinanet_transx_t_fpn_1x_coco.py',
                  'retinanet_tiny.pth', 'retinanet_transxnet_t.py'),
    'mask_rcnn': ('object_detection/configs/mask_rcnn_transx_t_fpn_1x_coco.py',
                  'maskrcnn_tiny.pth', 'mask_rcnn_transxnet_t.py'),
    'sfpn': ('semantic_segmentation/configs/sfpn_transxnet_tiny.py',
             'sfpn_transxnet_tiny.pth', 'fpn_transxnet_t_ade20k.py'),
}
# Classification biases that make a few dozen detections per image (fewer
# than max_per_img, so that no cut falls between near-equal scores).
RETINA_CLS_BIAS = -6.0
RCNN_BG_BIAS = 6.5


def levels(gen: torch.Generator, shape, std: float) -> torch.Tensor:
    """Random values of standard deviation ``std`` on 4 levels (they
    compress to about 2 bits each)."""
    k = torch.randint(0, 4, shape, generator=gen).float() - 1.5
    return k * (std / 1.25 ** 0.5)


def uniform(gen, shape, lo, hi):
    return lo + (hi - lo) * torch.randint(0, 16, shape, generator=gen) / 15.


def draw_weights(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Every float tensor of the model drawn: convs and linears N(0,
    1/fan_in)-like, norms' affine and running statistics around 1 and 0,
    layer scales 0.5-1, relative position biases of std 0.5."""
    sd = model.state_dict()
    for name, t in sd.items():
        if not t.is_floating_point():
            continue
        leaf = name.rsplit('.', 1)[-1]
        if 'layer_scale' in name and leaf == 'weight':
            v = uniform(gen, t.shape, 0.5, 1.0)
        elif 'relative_pos_enc' in name:
            v = levels(gen, t.shape, 0.5)
        elif leaf == 'running_var':
            v = uniform(gen, t.shape, 0.5, 1.5)
        elif leaf == 'running_mean':
            v = levels(gen, t.shape, 0.1)
        elif t.dim() == 1 and leaf == 'weight':  # a norm's scale
            v = uniform(gen, t.shape, 0.5, 1.5)
        elif leaf == 'bias' or t.dim() == 1:
            v = levels(gen, t.shape, 0.1)
        else:  # IDConv's kernel bank (groups, C, K, K) is depthwise
            fan_in = t.shape[-2] * t.shape[-1] if name.endswith(
                'local_unit.weight') else t[0].numel()
            v = levels(gen, t.shape, fan_in ** -0.5)
        t.copy_(v)
    head = getattr(model, 'bbox_head', None)
    if head is not None and hasattr(head, 'retina_cls'):
        head.retina_cls.bias.data.add_(RETINA_CLS_BIAS)
    roi = getattr(model, 'roi_head', None)
    if roi is not None:
        roi.bbox_head.fc_cls.bias.data[-1] = RCNN_BG_BIAS
        rpn = model.rpn_head.rpn_cls
        rpn.bias.data.add_(-1.0)


def build(repo: str, kind: str):
    from mmcv import Config
    from mmcv.cnn.utils import revert_sync_batchnorm
    cfg = Config.fromfile(osp.join(repo, MODELS[kind][0]))
    cfg.model.backbone.pretrained = False  # no download: weights drawn
    cfg.merge_from_dict(NARROW[kind])
    if kind == 'sfpn':
        from mmseg.models import build_segmentor
        model = build_segmentor(cfg.model)
    else:
        from mmdet.models import build_detector
        model = build_detector(cfg.model)
    model = revert_sync_batchnorm(model)
    model.cfg = cfg
    return model.eval(), cfg


def save_as_their_training(model, cfg, kind: str, path: str) -> None:
    """mmcv 1.x's save_checkpoint with the meta their runners write, and
    an AdamW state as after training (zero moments keep it small)."""
    import mmcv
    from mmcv.runner import save_checkpoint
    if kind == 'sfpn':
        import mmseg
        from mmseg.datasets import ADE20KDataset
        meta = dict(mmseg_version=f'{mmseg.__version__}+0000000',
                    config=cfg.pretty_text, CLASSES=ADE20KDataset.CLASSES,
                    PALETTE=ADE20KDataset.PALETTE, iter=80000,
                    hook_msgs=dict(best_score=np.float64(0.455),
                                   best_ckpt='best_mIoU_iter_80000.pth',
                                   last_ckpt='iter_80000.pth'))
    else:
        import mmdet
        from mmdet.datasets import CocoDataset
        meta = dict(mmdet_version=f'{mmdet.__version__}+0000000',
                    config=cfg.pretty_text, CLASSES=CocoDataset.CLASSES,
                    epoch=12, iter=87960, seed=SEED,
                    hook_msgs=dict(best_score=0.431,
                                   best_ckpt='best_bbox_mAP_epoch_12.pth',
                                   last_ckpt='epoch_12.pth'))
    meta.update(env_info=f'mmcv {mmcv.__version__}, torch '
                f'{torch.__version__} (parity fixture)',
                exp_name=osp.basename(MODELS[kind][0]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4,
                                  weight_decay=0.05)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    lr = optimizer.param_groups[0]['lr']
    optimizer.param_groups[0]['lr'] = 0.
    optimizer.step()  # fills the state; lr 0 leaves the weights as drawn
    optimizer.param_groups[0]['lr'] = lr
    save_checkpoint(model, path, optimizer=optimizer, meta=meta)


@torch.no_grad()
def raw_outputs(model, kind: str, x: torch.Tensor) -> dict:
    """Backbone and neck features and the first head's maps."""
    out = {'input': x, 'backbone': list(model.backbone(x))}
    out['neck'] = list(model.neck(out['backbone']))
    if kind == 'retinanet':
        cls, reg = model.bbox_head(out['neck'])
        out.update(cls=list(cls), reg=list(reg))
    elif kind == 'mask_rcnn':
        cls, reg = model.rpn_head(out['neck'])
        out.update(cls=list(cls), reg=list(reg))
    else:
        out['seg_logits'] = model.decode_head(out['neck'])
    return out


def rle_label_map(seg: np.ndarray) -> dict:
    """A label map as run lengths over its flattened pixels."""
    flat = seg.reshape(-1)
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    lengths = np.diff(np.r_[starts, flat.size])
    return dict(shape=list(seg.shape), values=flat[starts].tolist(),
                lengths=lengths.tolist())


@torch.no_grad()
def predictions(model, kind: str, images: list) -> list:
    import pycocotools.mask as mask_util
    out = []
    for path in images:
        if kind == 'sfpn':
            from mmseg.apis import inference_segmentor
            seg = inference_segmentor(model, path)[0]
            out.append(dict(image=osp.basename(path),
                            label_map=rle_label_map(seg.astype(np.int64))))
            continue
        from mmdet.apis import inference_detector
        result = inference_detector(model, path)
        boxes, masks = (result if isinstance(result, tuple)
                        else (result, None))
        det = dict(image=osp.basename(path), boxes=[], scores=[], labels=[])
        if masks is not None:
            det['masks'] = []
        for label, per_class in enumerate(boxes):
            for i, row in enumerate(per_class):
                det['boxes'].append([float(v) for v in row[:4]])
                det['scores'].append(float(row[4]))
                det['labels'].append(label)
                if masks is not None:
                    rle = mask_util.encode(np.asfortranarray(
                        masks[label][i].astype(np.uint8)))
                    det['masks'].append(dict(
                        size=list(rle['size']),
                        counts=rle['counts'].decode()))
        out.append(det)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('authors_repo')
    parser.add_argument('coco_sample')
    parser.add_argument('out')
    args = parser.parse_args()
    repo = osp.abspath(args.authors_repo)
    sys.path.insert(0, osp.join(repo, 'semantic_segmentation'))
    import importlib.util
    for task in ('object_detection', 'semantic_segmentation'):
        # their backbone, registered in mmdet's and in mmseg's BACKBONES
        spec = importlib.util.spec_from_file_location(
            f'authors_{task}_transxnet', osp.join(repo, task, 'transxnet.py'))
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    import mmseg_custom  # noqa: F401  (their AlignResize)

    images = sorted(
        osp.join(args.coco_sample, 'val2017', f)
        for f in os.listdir(osp.join(args.coco_sample, 'val2017')))
    manifest = dict(seed=SEED, raw_input=list(RAW_INPUT), narrow=NARROW,
                    models={}, images=[osp.basename(p) for p in images],
                    made_with=dict(torch=torch.__version__))
    with tempfile.TemporaryDirectory() as tmp:
        for kind, (_, filename, ours) in MODELS.items():
            gen = torch.Generator().manual_seed(SEED)  # the same backbone
            model, cfg = build(repo, kind)
            draw_weights(model, gen)
            save_as_their_training(model, cfg, kind, osp.join(tmp, filename))
            x = torch.randn(RAW_INPUT, generator=gen)
            torch.save(raw_outputs(model, kind, x),
                       osp.join(tmp, f'raw_{kind}.pth'))
            preds = predictions(model, kind, images)
            with open(osp.join(tmp, f'predictions_{kind}.json'), 'w') as f:
                json.dump(preds, f)
            manifest['models'][kind] = dict(
                checkpoint=filename, config=ours,
                authors_config=MODELS[kind][0],
                detections=sum(len(p.get('scores', ())) for p in preds))
            print(kind, manifest['models'][kind], flush=True)
        import mmcv
        import mmdet
        import mmseg
        manifest['made_with'].update(mmcv=mmcv.__version__,
                                     mmdet=mmdet.__version__,
                                     mmseg=mmseg.__version__)
        with open(osp.join(tmp, 'manifest.json'), 'w') as f:
            json.dump(manifest, f, indent=1)
        names = ['manifest.json'] + [
            n for kind, (_, filename, _) in MODELS.items()
            for n in (filename, f'raw_{kind}.pth',
                      f'predictions_{kind}.json')]
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode='w') as tar:
            for n in names:
                tar.add(osp.join(tmp, n), arcname=n)
    import lzma
    filters = [dict(id=lzma.FILTER_LZMA2, preset=9, dict_size=192 << 20)]
    with lzma.open(args.out, 'wb', format=lzma.FORMAT_XZ,
                   filters=filters) as f:
        f.write(buf.getvalue())
    print(f'{args.out}: {osp.getsize(args.out) / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()

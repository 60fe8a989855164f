"""The authors' trained COCO and ADE20K models (mmdet 2.28 / mmseg 0.30 files)
in our configs, against their own stack.

``tests/data/authors_parity.tar.xz`` was made by ``tests/parity/
make_fixture.py`` with the authors' code, mmdet 2.28.2, mmseg 0.30.0 and
mmcv-full 1.7.2: RetinaNet-T, Mask R-CNN-T and Semantic FPN-T (TransXNet-T,
the neck and heads narrowed as its manifest says) with random weights, saved
as their training saves them, with their raw outputs on a fixed input and
their predictions on the real COCO sample.
"""
import json
import os.path as osp
import pickle
import tarfile

import numpy as np
import pytest
import torch
from helpers import ROOT, config_file, rel_err, run_tool
from mmengine.config import Config

from transxnet_mm.apis import load_model_checkpoint
from transxnet_mm.models.utils.ckpt_convert import CheckpointMismatch

FIXTURE = osp.join(ROOT, 'tests', 'data', 'authors_parity.tar.xz')
KINDS = ('retinanet', 'mask_rcnn', 'sfpn')
RAW_RTOL = 1e-4      # max |ours - theirs| / max |theirs|, per tensor
SCORE_ATOL = 1e-4    # detection scores
BOX_ATOL = 0.01      # box corners, pixels of the original image
PIXELS_AGREE = 0.999  # masks and label maps: the fraction of equal pixels


@pytest.fixture(scope='session')
def authors(tmp_path_factory) -> dict:
    """The fixture's files, unpacked once, and its manifest."""
    out = tmp_path_factory.mktemp('authors_parity')
    with tarfile.open(FIXTURE, 'r:xz') as tar:
        tar.extractall(out, filter='data')
    with open(out / 'manifest.json') as f:
        manifest = json.load(f)
    return dict(dir=str(out), **manifest)


def our_config(authors: dict, kind: str) -> Config:
    """Our config of the model, narrowed as the fixture's models are."""
    cfg = Config.fromfile(config_file(authors['models'][kind]['config']))
    cfg.merge_from_dict(authors['narrow'][kind])
    cfg.model.backbone.init_cfg = None
    return cfg


def on_sample(cfg: Config, coco_sample: str, tmp_path) -> str:
    """``cfg`` testing on the COCO sample, written to a file for
    tools/test.py."""
    cfg.test_dataloader.dataset.update(
        data_root=coco_sample + '/',
        ann_file='annotations/instances_val2017_sample.json',
        data_prefix=dict(img='val2017/'))
    cfg.test_evaluator.ann_file = osp.join(
        coco_sample, 'annotations', 'instances_val2017_sample.json')
    path = str(tmp_path / 'config.py')
    cfg.dump(path)
    return path


def checkpoint(authors: dict, kind: str) -> str:
    return osp.join(authors['dir'], authors['models'][kind]['checkpoint'])


def init(authors: dict, kind: str):
    """The toolbox's own API: mmdet's init_detector, mmseg's init_model."""
    if kind == 'sfpn':
        from mmseg.apis import init_model
        return init_model(our_config(authors, kind), checkpoint(authors, kind),
                          device='cpu')
    from mmdet.apis import init_detector
    return init_detector(our_config(authors, kind), checkpoint(authors, kind),
                         device='cpu')


@pytest.mark.parametrize('kind', KINDS)
def test_raw_outputs_equal_the_authors_stack(authors, kind):
    """Backbone and neck features and the head's maps on the fixed input,
    through the toolbox's API and the authors' file as released."""
    model = init(authors, kind).eval()
    theirs = torch.load(osp.join(authors['dir'], f'raw_{kind}.pth'))
    if kind == 'retinanet':  # their stage-0 output (no norm: nn.Identity)
        theirs['backbone'] = theirs['backbone'][1:]  # is unused (start_level)
    x = theirs['input']
    with torch.no_grad():
        ours = {'backbone': list(model.backbone(x))}
        ours['neck'] = list(model.neck(ours['backbone']))
        if kind == 'retinanet':
            ours['cls'], ours['reg'] = map(list, model.bbox_head(ours['neck']))
        elif kind == 'mask_rcnn':
            ours['cls'], ours['reg'] = map(list, model.rpn_head(ours['neck']))
        else:
            ours['seg_logits'] = model.decode_head.forward(ours['neck'])
    errors = {}
    for name, value in ours.items():
        values = value if isinstance(value, list) else [value]
        expected = theirs[name] if isinstance(theirs[name], list) \
            else [theirs[name]]
        assert len(values) == len(expected), name
        for i, (a, b) in enumerate(zip(values, expected)):
            assert a.shape == b.shape, (name, i)
            errors[f'{name}.{i}'] = rel_err(a, b)
    print(kind, 'largest relative error', max(errors.values()))
    assert max(errors.values()) <= RAW_RTOL, errors


def detections_of(pred) -> dict:
    """mmdet 3 predictions as sorted arrays (by label, then score)."""
    inst = pred.pred_instances
    out = dict(boxes=inst.bboxes.numpy(), scores=inst.scores.numpy(),
               labels=inst.labels.numpy())
    if 'masks' in inst:
        out['masks'] = inst.masks.numpy()
    return out


def theirs_of(det: dict) -> dict:
    import pycocotools.mask as mask_util
    out = dict(boxes=np.array(det['boxes'], np.float32).reshape(-1, 4),
               scores=np.array(det['scores'], np.float32),
               labels=np.array(det['labels'], np.int64))
    if 'masks' in det:
        out['masks'] = np.stack([
            mask_util.decode(dict(size=m['size'], counts=m['counts'].encode()))
            for m in det['masks']]).astype(bool) if det['masks'] else \
            np.zeros((0, 1, 1), bool)
    return out


def nms_settings(cfg: Config) -> tuple:
    """(IoU threshold, max detections per image) of the model's last NMS."""
    test_cfg = cfg.model.test_cfg
    test_cfg = test_cfg.get('rcnn', test_cfg)
    return test_cfg.nms.iou_threshold, test_cfg.max_per_img


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from mmdet.structures.bbox import bbox_overlaps
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    return bbox_overlaps(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def _at_a_decision(det: dict, i: int, other: dict, nms: tuple) -> bool:
    """Whether detection ``i`` of ``det`` sits at one of NMS's decisions:
    its IoU with a higher-scored detection of its class within 1% of the
    threshold (mmdet 3's Mask R-CNN takes that decision in the resized
    image, mmdet 2 in the original one, where batched NMS's per-class
    coordinate offsets round differently), or at the max-per-image cut of
    a full ``other``."""
    iou_thr, max_per_img = nms
    same = (det['labels'] == det['labels'][i]) & (
        det['scores'] > det['scores'][i])
    ious = _iou(det['boxes'][i:i + 1], det['boxes'][same])
    near = ious.size and abs(ious.max() - iou_thr) <= 0.01 * iou_thr
    cut = len(other['scores']) == max_per_img and \
        det['scores'][i] <= other['scores'].min() + SCORE_ATOL
    return bool(near or cut)


def _explained(unmatched: dict, dets: dict, nms: tuple) -> set:
    """The unmatched detections (index sets of ``dets['ours']`` and
    ``dets['theirs']``) that NMS's decisions explain: those at a decision
    (``_at_a_decision``), then, in turn, those that one of them suppresses
    in the other stack (same class, higher score, IoU over the
    threshold)."""
    iou_thr = nms[0]
    names = {'ours': 'theirs', 'theirs': 'ours'}
    done = {(side, i) for side, idx in unmatched.items() for i in idx
            if _at_a_decision(dets[side], i, dets[names[side]], nms)}
    grew = True
    while grew:
        grew = False
        for side, idx in unmatched.items():
            det, other = dets[side], dets[names[side]]
            for i in idx:
                if (side, i) in done:
                    continue
                flips = [k for s, k in done if s == names[side]
                         and other['labels'][k] == det['labels'][i]
                         and other['scores'][k] > det['scores'][i]]
                if flips and _iou(det['boxes'][i:i + 1],
                                  other['boxes'][flips]).max() > iou_thr:
                    done.add((side, i))
                    grew = True
    return done


def assert_same_detections(ours: dict, theirs: dict, image: str,
                           nms: tuple) -> dict:
    """The same detections: each of ours matches one of theirs of the same
    label (box IoU > 0.99) with score and box corners within the
    tolerances and PIXELS_AGREE of its mask's pixels equal; a detection of
    either without a match must be one that NMS's decisions explain
    (``_explained``).
    Returns the largest differences and the counts."""
    iou = _iou(ours['boxes'], theirs['boxes'])
    iou[ours['labels'][:, None] != theirs['labels'][None, :]] = 0
    pairs = []
    for i in np.argsort(-ours['scores']):
        j = int(np.argmax(iou[i])) if iou.shape[1] else -1
        if j >= 0 and iou[i, j] > 0.99:
            pairs.append((i, j))
            iou[:, j] = 0
    diff = dict(matched=len(pairs), ours=len(ours['scores']),
                theirs=len(theirs['scores']), score=0., box=0.)
    for i, j in pairs:
        diff['score'] = max(diff['score'], abs(float(
            ours['scores'][i] - theirs['scores'][j])))
        diff['box'] = max(diff['box'], float(np.abs(
            ours['boxes'][i] - theirs['boxes'][j]).max()))
    assert diff['score'] <= SCORE_ATOL and diff['box'] <= BOX_ATOL, \
        (image, diff)
    if 'masks' in theirs:
        agree = [(ours['masks'][i] == theirs['masks'][j]).mean()
                 for i, j in pairs]
        diff['mask_agreement'] = float(min(agree, default=1.))
        assert diff['mask_agreement'] >= PIXELS_AGREE, (image, diff)
    dets = dict(ours=ours, theirs=theirs)
    unmatched = dict(
        ours=set(range(len(ours['scores']))) - {i for i, _ in pairs},
        theirs=set(range(len(theirs['scores']))) - {j for _, j in pairs})
    unexplained = {(side, i) for side, idx in unmatched.items()
                   for i in idx} - _explained(unmatched, dets, nms)
    assert not unexplained, (image, 'detections without a match', [
        (side, dets[side]['labels'][i], dets[side]['scores'][i],
         dets[side]['boxes'][i]) for side, i in sorted(unexplained)], diff)
    return diff


def label_map(rle: dict) -> np.ndarray:
    return np.repeat(rle['values'], rle['lengths']).reshape(rle['shape'])


def predictions_of(authors: dict, kind: str) -> dict:
    with open(osp.join(authors['dir'], f'predictions_{kind}.json')) as f:
        return {p['image']: p for p in json.load(f)}


def images(coco_sample: str, authors: dict, n=None) -> list:
    return [osp.join(coco_sample, 'val2017', name)
            for name in authors['images'][:n]]


@pytest.mark.parametrize('kind', ['retinanet', 'mask_rcnn'])
def test_detections_through_init_detector(authors, coco_sample, kind):
    """mmdet's init_detector + inference_detector on real images give the
    authors' stack's detections (and masks)."""
    from mmdet.apis import inference_detector
    model = init(authors, kind)
    assert model.dataset_meta['classes'][0] == 'person'  # from their meta
    theirs = predictions_of(authors, kind)
    nms = nms_settings(our_config(authors, kind))
    for path in images(coco_sample, authors, 1):  # 100 detections each
        ours = detections_of(inference_detector(model, path))
        diff = assert_same_detections(
            ours, theirs_of(theirs[osp.basename(path)]), path, nms)
        print(kind, osp.basename(path), diff)


@pytest.mark.slow
def test_mask_rcnn_through_det_inferencer(authors, coco_sample):
    """mmdet's DetInferencer(model=CONFIG, weights=FILE)."""
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=our_config(authors, 'mask_rcnn'),
                               weights=checkpoint(authors, 'mask_rcnn'),
                               device='cpu', show_progress=False)
    theirs = predictions_of(authors, 'mask_rcnn')
    nms = nms_settings(our_config(authors, 'mask_rcnn'))
    paths = images(coco_sample, authors)
    out = inferencer(paths, return_datasamples=True)
    for path, pred in zip(paths, out['predictions']):
        diff = assert_same_detections(
            detections_of(pred), theirs_of(theirs[osp.basename(path)]), path,
            nms)
        print('mask_rcnn', osp.basename(path), diff)


@pytest.mark.parametrize('n', [1, pytest.param(None, marks=pytest.mark.slow)])
def test_label_maps_through_init_model(authors, coco_sample, n):
    """mmseg's init_model + inference_model give the authors' label maps;
    the file keeps mmseg 0.30's numpy best mIoU, and loads."""
    from mmseg.apis import inference_model
    model = init(authors, 'sfpn')
    assert model.dataset_meta['classes'][:2] == ('wall', 'building')
    theirs = predictions_of(authors, 'sfpn')
    for path in images(coco_sample, authors, n):
        ours = inference_model(model, path).pred_sem_seg.data[0].numpy()
        expected = label_map(theirs[osp.basename(path)]['label_map'])
        assert ours.shape == expected.shape
        agree = float((ours == expected).mean())
        print('sfpn', osp.basename(path), agree)
        assert agree >= PIXELS_AGREE, (path, agree)


def test_label_map_through_mmseg_inferencer(authors, coco_sample):
    """mmseg's MMSegInferencer(model=CONFIG, weights=FILE)."""
    from mmseg.apis import MMSegInferencer
    inferencer = MMSegInferencer(model=our_config(authors, 'sfpn'),
                                 weights=checkpoint(authors, 'sfpn'),
                                 device='cpu')
    assert inferencer.model.dataset_meta['classes'][:2] == ('wall',
                                                            'building')
    path = images(coco_sample, authors, 1)[0]
    ours = inferencer(path)['predictions']
    expected = label_map(predictions_of(authors, 'sfpn')[osp.basename(path)]
                         ['label_map'])
    assert ours.shape == expected.shape
    assert float((ours == expected).mean()) >= PIXELS_AGREE


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['retinanet', 'mask_rcnn'])
def test_detections_through_tools_test(authors, coco_sample, tmp_path, kind):
    """``tools/test.py CONFIG THEIR_FILE`` on the COCO sample: it evaluates
    (COCO AP) and its dumped predictions are the authors' stack's."""
    cfg = our_config(authors, kind)
    cfg.test_dataloader.num_workers = 0
    cfg.test_dataloader.persistent_workers = False
    path = on_sample(cfg, coco_sample, tmp_path)
    log = run_tool(['tools/test.py', path, checkpoint(authors, kind),
                    '--work-dir', str(tmp_path), '--out',
                    str(tmp_path / 'out.pkl')])
    assert 'bbox_mAP' in log
    theirs = predictions_of(authors, kind)
    with open(tmp_path / 'out.pkl', 'rb') as f:
        results = pickle.load(f)
    assert len(results) == len(theirs)
    for res in results:
        inst = res['pred_instances']
        ours = dict(boxes=inst['bboxes'].numpy(), scores=inst['scores'].numpy(),
                    labels=inst['labels'].numpy())
        if 'masks' in inst:  # MMEngine's DumpResults keeps the tensor
            ours['masks'] = inst['masks'].numpy().astype(bool)
        name = osp.basename(res['img_path'])
        diff = assert_same_detections(ours, theirs_of(theirs[name]), name,
                                      nms_settings(cfg))
        print(kind, name, diff)


# --------------------------------------------------------------------------
# Files that do not fit stop the tools and the APIs (never a random model).


def test_wrong_variant_stops_the_api_naming_the_variant(authors):
    from mmdet.apis import init_detector
    cfg = Config.fromfile(config_file('retinanet_transxnet_s.py'))
    cfg.merge_from_dict(authors['narrow']['retinanet'])
    cfg.model.backbone.init_cfg = None
    with pytest.raises(CheckpointMismatch,
                       match=r"holds TransXNet-T .* backbone is TransXNet-S"
                       r".*arch='t'"):
        init_detector(cfg, checkpoint(authors, 'retinanet'), device='cpu')


def test_backbone_only_file_stops_the_api(tmp_path):
    """The authors' ImageNet file given to a detector: no silent random
    detector."""
    from mmdet.apis import init_detector
    from mmengine.registry import init_default_scope

    from transxnet_mm.models.utils.ckpt_convert import to_official
    init_default_scope('mmdet')
    cfg = Config.fromfile(config_file('retinanet_transxnet_t.py'))
    cfg.model.backbone.init_cfg = None
    from transxnet_mm import TransXNet
    sd, _ = to_official(TransXNet('t', out_indices=(3, )).state_dict())
    path = tmp_path / 'transx-t.pth.tar'
    torch.save({'state_dict': sd}, path)
    with pytest.raises(CheckpointMismatch, match=r"no weights for the "
                       r"backbone \('backbone\.\*'\).*init_cfg"):
        init_detector(cfg, str(path), device='cpu')


def test_other_detector_file_stops_the_loader(authors):
    """A RetinaNet file in a Mask R-CNN config: its backbone has no stage 0
    output norm, and the heads are missing."""
    from mmdet.apis import init_detector
    cfg = our_config(authors, 'mask_rcnn')
    with pytest.raises(CheckpointMismatch, match='no output norm norm0'):
        init_detector(cfg, checkpoint(authors, 'retinanet'), device='cpu')


def test_incomplete_file_stops_our_loader(authors, tmp_path):
    """A file without the mask head stops our one loader (tools/test.py,
    image_demo, ...) with what is missing; the backbone is complete."""
    from mmengine.registry import MODELS, init_default_scope
    full = torch.load(checkpoint(authors, 'mask_rcnn'))
    full['state_dict'] = {k: v for k, v in full['state_dict'].items()
                          if not k.startswith('roi_head.mask_head.')}
    path = tmp_path / 'maskrcnn_tiny_cut.pth'
    torch.save(full, path)
    init_default_scope('mmdet')
    model = MODELS.build(our_config(authors, 'mask_rcnn').model)
    with pytest.raises(CheckpointMismatch, match=r'maskrcnn_tiny_cut\.pth '
                       r'lacks \d+ weights of this model, in roi_head'):
        load_model_checkpoint(model, str(path))


@pytest.mark.slow
def test_tools_test_stops_on_a_file_that_does_not_fit(authors, tmp_path,
                                                      coco_sample):
    path = on_sample(our_config(authors, 'mask_rcnn'), coco_sample, tmp_path)
    import subprocess
    import sys
    out = subprocess.run([sys.executable, 'tools/test.py', path,
                          checkpoint(authors, 'retinanet'), '--work-dir',
                          str(tmp_path)], cwd=ROOT, capture_output=True,
                         text=True)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'retinanet_tiny.pth' in last \
        and 'no output norm norm0' in last, out.stderr[-2000:]


@pytest.mark.slow
def test_resume_from_their_file_says_what_it_serves(authors, tmp_path):
    import subprocess
    import sys
    out = subprocess.run(
        [sys.executable, 'tools/train.py',
         config_file('demo/retinanet_transxnet_t_coco_sample.py'),
         '--work-dir', str(tmp_path), '--resume',
         checkpoint(authors, 'retinanet')],
        cwd=ROOT, capture_output=True, text=True)
    assert out.returncode != 0
    assert 'written by mmdet 2.28.2' in out.stderr and 'load_from' in \
        out.stderr, out.stderr[-2000:]


@pytest.mark.slow
def test_converter_writes_an_mmdet3_checkpoint(authors, tmp_path):
    """transxnet_to_mm.py on their detector: our key names, the class names
    as MMEngine's dataset_meta; it then loads with strict keys."""
    out = tmp_path / 'retinanet_t_mm.pth'
    log = run_tool(['tools/model_converters/transxnet_to_mm.py',
                    checkpoint(authors, 'retinanet'), str(out)])
    assert 'whole model' in log
    ckpt = torch.load(out)
    assert ckpt['meta']['dataset_meta']['classes'][0] == 'person'
    assert not any('network.' in k for k in ckpt['state_dict'])
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmdet')
    model = MODELS.build(our_config(authors, 'retinanet').model)
    model.load_state_dict(ckpt['state_dict'], strict=True)

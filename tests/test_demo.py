"""The main job's fit check (tools/run_demo.sh): its split, its loss falling
on the real sample, the side-by-side drawings and the log plots."""
import json
import os.path as osp

import pytest
import torch
from helpers import ROOT, fixed_batch_losses, load_tool, run_tool
from mmengine.config import Config

from transxnet_mm.apis import build_model

DEMO = osp.join(ROOT, 'configs/demo/retinanet_transxnet_t_coco_sample.py')
MASK_DEMO = osp.join(ROOT, 'configs/demo/mask_rcnn_transxnet_t_coco_sample.py')


def build_dataset(cfg, key: str):
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    return DATASETS.build(cfg[key].dataset)


@pytest.mark.parametrize('path', [DEMO, MASK_DEMO])
def test_split_is_honest_and_never_trains_on_one_image(coco_sample, path):
    """Validation (the fit check) is the training images; the held-out test
    images are the others; no training batch has 1 image (IDConv's BN)."""
    cfg = Config.fromfile(path)
    assert 'coco_sample' not in cfg  # unpacked over the paper config
    ids = {}
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.data_root = coco_sample + '/'
        dataset = build_dataset(cfg, key)
        ids[key] = {dataset.get_data_info(i)['img_id']
                    for i in range(len(dataset))}
    assert ids['train_dataloader'] == ids['val_dataloader']
    assert len(ids['train_dataloader']) == 8
    assert ids['test_dataloader'] == {86956, 424349}
    assert cfg.train_dataloader.batch_sampler.type == 'FullBatchSampler'
    assert len(ids['train_dataloader']) % cfg.train_dataloader.batch_size == 0
    # Each split is scored against its own ground truth only.
    assert cfg.val_evaluator.ann_file is None
    assert cfg.test_evaluator.ann_file is None
    # A fit check: the training images are not augmented.
    types = [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert not any('Flip' in t or 'Random' in t for t in types), types
    with_mask = [t.get('with_mask', False)
                 for t in cfg.train_dataloader.dataset.pipeline
                 if t.type == 'LoadAnnotations']
    assert with_mask == [path == MASK_DEMO]


@pytest.mark.slow
def test_fit_check_loss_falls_on_real_images(coco_sample):
    """The demo's model and lr on one batch of 2 real training images at a
    small scale: within 10 steps the loss falls below 0.6 of its start
    (measured: 2.34 -> 1.07; at lr 0 it stays at 2.34)."""
    from mmengine.runner import Runner
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    cfg.train_dataloader.dataset.data_root = coco_sample + '/'
    resize = cfg.train_dataloader.dataset.pipeline[2]
    assert resize.type == 'Resize'
    resize.scale = (128, 128)  # smaller than the demo: a test, not a run
    build_dataset(cfg, 'train_dataloader')  # sets the default scope
    batch = next(iter(Runner.build_dataloader(cfg.train_dataloader, seed=0)))
    model = build_model(cfg, inference=False)
    model.init_weights()  # as the runner does: the focal loss's prior bias
    losses = fixed_batch_losses(
        model, batch, lr=cfg.optim_wrapper.optimizer.lr,
        weight_decay=cfg.optim_wrapper.optimizer.weight_decay, steps=10)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert min(losses[-3:]) < 0.6 * losses[0], losses


@pytest.mark.slow
def test_image_demo_draws_ground_truth_beside_detections(coco_sample,
                                                         tmp_path):
    """--draw-gt: one PNG per image, ground truth left, detections right
    (twice the image's width); an image outside the config's datasets is
    refused with the fix."""
    import mmcv
    cfg = Config.fromfile(DEMO)
    build_dataset(cfg, 'val_dataloader')  # sets the default scope
    ckpt = str(tmp_path / 'random.pth')
    model = build_model(cfg, inference=False)
    torch.save({'state_dict': model.state_dict()}, ckpt)
    image = osp.join(coco_sample, 'val2017', '000000424349.jpg')
    run_tool(['tools/image_demo.py', image, DEMO, ckpt, '--out-dir',
              str(tmp_path / 'vis'), '--draw-gt'])
    drawn = mmcv.imread(str(tmp_path / 'vis' / '000000424349.png'))
    h, w = mmcv.imread(image).shape[:2]
    assert drawn.shape[:2] == (h, 2 * w)
    other = str(tmp_path / 'other.jpg')
    mmcv.imwrite(mmcv.imread(image), other)
    with pytest.raises(AssertionError, match='neither the val nor the test'):
        run_tool(['tools/image_demo.py', other, DEMO, ckpt, '--out-dir',
                  str(tmp_path / 'vis'), '--draw-gt'])


def write_log(path: str) -> None:
    """An MMEngine scalars log: 8 training iterations of 2 epochs, one
    evaluation after each epoch."""
    lines = []
    for step in range(1, 9):
        lines.append(dict(lr=1e-4 * step, loss=4.0 / step, time=0.5,
                          data_time=0.1, epoch=(step - 1) // 4 + 1,
                          iter=step, memory=100, step=step))
        if step % 4 == 0:
            lines.append({'coco/bbox_mAP': 0.1 * step, 'data_time': 0.1,
                          'time': 0.2, 'step': step // 4})
    with open(path, 'w') as f:
        f.write('\n'.join(json.dumps(line) for line in lines) + '\n')


def test_analyze_logs_plots_and_times(tmp_path):
    tool = load_tool('analysis_tools', 'analyze_logs.py')
    run_dir = tmp_path / 'work' / '20260101_000000'
    (run_dir / 'vis_data').mkdir(parents=True)
    write_log(str(run_dir / 'vis_data' / 'scalars.json'))
    log = tool.RunLog(str(tmp_path / 'work'))  # the newest run of a work dir
    loss, xlabel = log.curve('loss')
    assert xlabel == 'iteration' and loss[:, 0].tolist() == list(range(1, 9))
    ap, xlabel = log.curve('coco/bbox_mAP')
    assert xlabel == 'epoch' and ap[:, 0].tolist() == [1, 2]
    assert ap[:, 1] == pytest.approx([0.4, 0.8])

    out = str(tmp_path / 'curves.png')
    printed = run_tool(['tools/analysis_tools/analyze_logs.py', 'plot_curve',
                        str(run_dir / 'vis_data' / 'scalars.json'), '--keys',
                        'loss', 'lr', 'coco/bbox_mAP', '--out', out])
    assert out in printed
    import mmcv
    assert mmcv.imread(out).shape[0] > mmcv.imread(out).shape[1]  # 3 panels
    printed = run_tool(['tools/analysis_tools/analyze_logs.py',
                        'cal_train_time', str(tmp_path / 'work')])
    assert 'average iteration time: 0.500 s/iter' in printed
    with pytest.raises(AssertionError, match="no key 'los'.*loss"):
        run_tool(['tools/analysis_tools/analyze_logs.py', 'plot_curve',
                  str(tmp_path / 'work'), '--keys', 'los', '--out', out])


def test_analyze_logs_reads_the_authors_mmcv1_logs(tmp_path):
    """An mmdet 2.28 ``*.log.json`` (the authors' released logs: iterations
    counted within each epoch, ``bbox_mAP``) in MMEngine's names, plotted
    beside an MMEngine run; and an mmseg 0.30 one (global iterations)."""
    tool = load_tool('analysis_tools', 'analyze_logs.py')
    det = tmp_path / 'retinanet_tiny.log.json'
    lines = [dict(env_info='sys.platform: linux', seed=0)]
    for epoch in (1, 2):
        for it in (50, 100, 150):
            lines.append(dict(mode='train', epoch=epoch, iter=it, lr=1e-4,
                              memory=5000, data_time=0.01, loss_cls=1.0,
                              loss_bbox=0.5, loss=1.5 / epoch, time=0.4))
        lines.append(dict(mode='val', epoch=epoch, iter=160, lr=1e-4,
                          bbox_mAP=0.2 * epoch, bbox_mAP_50=0.4,
                          bbox_mAP_copypaste='0.2 0.4'))
    det.write_text('\n'.join(json.dumps(x) for x in lines) + '\n')
    log = tool.RunLog(str(det))
    loss, xlabel = log.curve('loss')
    assert xlabel == 'iteration'
    assert loss[:, 0].tolist() == [50, 100, 150, 210, 260, 310]
    ap, xlabel = log.curve('coco/bbox_mAP')
    assert xlabel == 'epoch' and ap.tolist() == [[1, 0.2], [2, 0.4]]
    assert 'lr' not in log.val and 'bbox_mAP_copypaste' not in log.val

    seg = tmp_path / 'sfpn.log.json'
    seg.write_text('\n'.join(json.dumps(x) for x in [
        dict(mode='train', epoch=1, iter=50, lr=2e-4, **{'decode.loss_ce': 2.}),
        dict(mode='train', epoch=1, iter=100, lr=2e-4,
             **{'decode.loss_ce': 1.}),
        dict(mode='val', epoch=1, iter=100, lr=2e-4, aAcc=0.5, mIoU=0.3)]))
    log = tool.RunLog(str(seg))
    assert log.curve('decode.loss_ce')[0][:, 0].tolist() == [50, 100]
    miou, xlabel = log.curve('mIoU')
    assert xlabel == 'iteration' and miou.tolist() == [[100, 0.3]]

    ours = tmp_path / 'scalars.json'
    write_log(str(ours))
    out = str(tmp_path / 'both.png')
    printed = run_tool(['tools/analysis_tools/analyze_logs.py', 'plot_curve',
                        str(ours), str(det), '--keys', 'loss',
                        'coco/bbox_mAP', '--legend', 'ours', 'authors',
                        '--out', out])
    assert out in printed and osp.getsize(out) > 0

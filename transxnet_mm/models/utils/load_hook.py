"""The backbone's load-state-dict pre-hook, which every loader passes
through: the authors' keys become ours, and a whole-model checkpoint
without this backbone's weights stops."""
import re
from typing import Dict

from torch import Tensor, nn

from .ckpt_convert import (CheckpointMismatch, arch_name, check_variant,
                           rename_authors_keys)


def check_backbone_weights(model: nn.Module, state_dict: Dict[str, Tensor],
                           prefix: str) -> None:
    """Raise :class:`CheckpointMismatch` unless ``state_dict`` (our names)
    holds every weight of ``model`` under ``prefix``, with its shapes."""
    local = {k[len(prefix):]: v for k, v in state_dict.items()
             if k.startswith(prefix)}
    where = f"'{prefix}*'"
    ours = 'TransXNet-' + arch_name(model)
    if not local:
        raise CheckpointMismatch(
            f'The checkpoint has no weights for the backbone ({where}), so '
            f'{ours} would stay randomly initialised. A backbone-only '
            f"(ImageNet) file such as the authors' transx-*.pth.tar belongs "
            f"in model.backbone.init_cfg=dict(type='Pretrained', "
            f"checkpoint=...) for training; testing and inference need a "
            f'whole-model checkpoint (ours, or the authors\' COCO / ADE20K '
            f'models). Their ImageNet classifier loads whole into our '
            f'classification configs through tools/test.py and '
            f'tools/image_demo.py, and into mmpretrain\'s get_model by name '
            f"('transxnet-t_in1k', pretrained=True) or release URL; convert "
            f'a local copy for mmpretrain\'s other loaders '
            f'(tools/model_converters/transxnet_to_mm.py).')
    own = {k: v for k, v in model.state_dict().items()
           if not k.endswith('num_batches_tracked')}
    check_variant(model, local, prefix=prefix)
    missing = [k for k in own if k not in local]
    if missing:
        norms = sorted({k.split('.')[0] for k in missing
                        if re.match(r'norm\d+\.', k)})
        why = (f'; it has no output norm {", ".join(norms)}: it was made '
               f'for other out_indices (the authors\' RetinaNet outputs '
               f'stages 1-3 only), so use the config it was made with'
               if norms and len(norms) * 2 == len(missing) else '')
        raise CheckpointMismatch(
            f'The checkpoint lacks {len(missing)} of the {len(own)} weights '
            f'of the backbone {ours} ({where}), e.g. '
            f'{[prefix + k for k in missing[:3]]}{why}.')


def backbone_load_hook(module: nn.Module, state_dict: Dict[str, Tensor],
                       prefix: str, *args) -> None:
    """Rename the authors' keys to ours; inside a larger model (``prefix``
    not empty), stop a load that would leave the backbone random."""
    rename_authors_keys(state_dict, prefix)
    if prefix:
        check_backbone_weights(module, state_dict, prefix)

"""Synthetic COCO-format people for the demo and for tests: no dataset needed.

Articulated 3D stick bodies over the 17 COCO keypoints (``body``), painted with OpenCV as
outlined limbs, a torso and a shaded head with a face (``render``), over random backgrounds
(``background``), several to an image with occlusion (``scene``), written in the seed's COCO
layout with a stand-in detector's boxes (``dataset``).
"""

from .dataset import SyntheticPaths, generate_dataset
from .preview import draw_preview
from .scene import SceneConfig

__all__ = ["SceneConfig", "SyntheticPaths", "draw_preview", "generate_dataset"]

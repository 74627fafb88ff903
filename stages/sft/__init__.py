"""SFT: format the kept set, train the student with FSDP2, export it.

Other stages use only what is exported here: evaluation serves an exported student with its
image-only processor.
"""

from stages.sft.processor import IMAGE_ONLY_PROCESSOR, image_only_processor_class

__all__ = ["IMAGE_ONLY_PROCESSOR", "image_only_processor_class"]

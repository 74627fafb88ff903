"""SFT: format the kept set, train the student with FSDP2, export it.

What other stages may use (evaluation serves an exported student with this processor):
"""

from stages.sft.processor import IMAGE_ONLY_PROCESSOR, image_only_processor_class

__all__ = ["IMAGE_ONLY_PROCESSOR", "image_only_processor_class"]

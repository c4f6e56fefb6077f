"""`spic serve`: a local web page (and a Hugging Face Space) that shows SPIC beside classical codecs.

People judge an image codec by looking, so the page puts the SPIC reconstruction next to HEVC and WebP coding
the whole photograph at the same byte count, with the figures that say why: rate split into map and coarse
image, PSNR, boundary PSNR and the segmenter's mIoU. :mod:`.comparison` does the work without a web framework;
:mod:`.app` is the page (gradio, the ``serve`` extra); :mod:`.space` writes the folder that runs as a Space.
"""

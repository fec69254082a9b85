package org.pixelpost.objective;

/**
 * The pixel term of an objective (Eq. 2, or Eq. 8 with {@link PixelDecode#X0}) and its cost options.
 *
 * @param weight lambda (SFT) or mu (preference); 0 switches the term off
 * @param decode where the latents are decoded
 * @param fraction the term on this random fraction of the batch (1: all)
 * @param crop the term on a random latent crop of this size (0: the whole latent)
 * @param cropMargin latent pixels of context decoded around a crop and not compared
 * @param decoderChunk the decoder runs forward and backward on this many samples at a time (0: all)
 */
public record PixelTerm(double weight, PixelDecode decode, double fraction, int crop, int cropMargin, int decoderChunk) {
    public PixelTerm {
        org.pixelpost.io.check.Checks.nonNegative("pixel_weight", weight);
        if (!(fraction > 0 && fraction <= 1)) throw new org.pixelpost.io.check.InvalidValueException("pixel_fraction", fraction + " is out of range; must be in (0, 1]");
        org.pixelpost.io.check.Checks.atLeast("pixel_crop", crop, 0);
        org.pixelpost.io.check.Checks.atLeast("pixel_crop_margin", cropMargin, 0);
        org.pixelpost.io.check.Checks.atLeast("decoder_chunk", decoderChunk, 0);
    }

    public static PixelTerm off() {
        return new PixelTerm(0, PixelDecode.T, 1, 0, 1, 0);
    }

    /** The paper's pixel term at weight {@code weight}: decode at t, whole batch, whole latent. */
    public static PixelTerm of(double weight) {
        return new PixelTerm(weight, PixelDecode.T, 1, 0, 1, 0);
    }

    public boolean on() {
        return weight != 0;
    }
}

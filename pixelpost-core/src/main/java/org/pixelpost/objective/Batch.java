package org.pixelpost.objective;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/**
 * One micro-batch in model latent space: latents {@code z [B, C, h, w]} with their text
 * ({@code tokens [B, T, D]}, {@code mask [B, T]}); a preference batch also carries the losers'
 * latents {@code zLoser} (the winners are {@code z}, and both share the prompt).
 */
public record Batch(Tensor z, Tensor zLoser, Tensor tokens, Tensor mask) {
    /** The batch on {@code like}'s device. */
    public Batch on(Tensor like) {
        return new Batch(Tensors.follow(z, like), zLoser == null ? null : Tensors.follow(zLoser, like), Tensors.follow(tokens, like),
            mask == null ? null : Tensors.follow(mask, like));
    }

    public static Batch of(Tensor z, Tensor tokens, Tensor mask) {
        return new Batch(z, null, tokens, mask);
    }

    public static Batch pairs(Tensor zWinner, Tensor zLoser, Tensor tokens, Tensor mask) {
        return new Batch(zWinner, zLoser, tokens, mask);
    }

    public boolean isPairs() {
        return zLoser != null;
    }

    public long size() {
        return z.size(0);
    }
}

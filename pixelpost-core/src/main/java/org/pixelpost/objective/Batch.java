package org.pixelpost.objective;

import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.Conditioning;
import org.pixelpost.tensor.Tensors;

/**
 * One micro-batch in model latent space: latents {@code z [B, C, h, w]} with their conditioning
 * ({@code cond}: text tokens {@code [B, T, D]}, mask, and the family's extras); a preference batch
 * also carries the losers' latents {@code zLoser} (the winners are {@code z}, and both share the prompt).
 */
public record Batch(Tensor z, Tensor zLoser, Conditioning cond) {
    /** The batch on {@code like}'s device. */
    public Batch on(Tensor like) {
        return new Batch(Tensors.follow(z, like), zLoser == null ? null : Tensors.follow(zLoser, like), cond.on(like));
    }

    public static Batch of(Tensor z, Conditioning cond) {
        return new Batch(z, null, cond);
    }

    /** Shorthand for text tokens and their mask only. */
    public static Batch of(Tensor z, Tensor tokens, Tensor mask) {
        return of(z, Conditioning.of(tokens, mask));
    }

    public static Batch pairs(Tensor zWinner, Tensor zLoser, Conditioning cond) {
        return new Batch(zWinner, zLoser, cond);
    }

    /** Shorthand for text tokens and their mask only. */
    public static Batch pairs(Tensor zWinner, Tensor zLoser, Tensor tokens, Tensor mask) {
        return pairs(zWinner, zLoser, Conditioning.of(tokens, mask));
    }

    public boolean isPairs() {
        return zLoser != null;
    }

    public long size() {
        return z.size(0);
    }
}

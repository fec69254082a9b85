package org.pixelpost.nn;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;
import org.pixelpost.model.autoencoder.TinyAutoencoder;
import org.pixelpost.model.denoiser.DiT;

/** FLOP counts against sums worked out by hand, layer by layer (2 per multiply-add). */
class FlopsTest {
    @Test
    void tinyDiT() {
        // d = 192, 16 patches (8x8 latent, patch 2), 7 caption tokens of width 384, MLP 768, 32 -> 32 channels
        long embed = 2L * 16 * 128 * 192          // patch conv: 32 channels x 2 x 2 -> 192, per patch
            + 2L * 256 * 192 + 2L * 192 * 192     // timestep MLP
            + 2L * 192 * 1152                     // adaLN-single projection to 6d
            + 2L * 7 * 384 * 192 + 2L * 7 * 192 * 192; // caption projection
        long block = 2L * 16 * 192 * 576          // qkv
            + 4L * 16 * 16 * 192                  // scores + weighted sum, all heads
            + 2L * 16 * 192 * 192                 // attention output
            + 2L * 16 * 192 * 192                 // cross-attention q
            + 2L * 7 * 192 * 384                  // cross-attention kv over the caption
            + 4L * 16 * 7 * 192                   // cross scores + weighted sum
            + 2L * 16 * 192 * 192                 // cross-attention output
            + 2L * 16 * 192 * 768 * 2;            // MLP up and down
        long out = 2L * 16 * 192 * 128;           // final layer: 2 x 2 x 32 per patch
        assertEquals(embed + 6 * block + out, DiT.Config.named("tiny").forwardFlops(7));
        assertEquals(110_714_880L, DiT.Config.named("tiny").forwardFlops(7));
    }

    @Test
    void tinyAutoencoderDecoders() {
        // 3x3 convolution 64 -> 64 on an s x s map: 2 * 64 * 64 * 9 * s^2
        long c8 = 2L * 64 * 64 * 9 * 64, c16 = 4 * c8, c32 = 16 * c8, c64 = 64 * c8;
        long pool8 = 2L * 64 * 256 * 64 * 2;      // the GroupNorm branch's two 1x1 convolutions at 8x8 (TAEF2 only)
        long taesd = 2L * 4 * 64 * 9 * 64         // latent -> 64
            + 9 * c8 + c16 + 9 * c16 + c32 + 9 * c32 + c64 // three stages of 3 blocks (3 convs each), each followed by upsample + conv
            + 3 * c64 + 2L * 64 * 3 * 9 * 4096;   // last block and the conv to RGB at 64x64
        long taef2 = taesd - 2L * 4 * 64 * 9 * 64 + 2L * 32 * 64 * 9 * 64 + 3 * pool8;
        try (TinyAutoencoder sd = new TinyAutoencoder(TinyAutoencoder.Variant.TAESD);
             TinyAutoencoder f2 = new TinyAutoencoder(TinyAutoencoder.Variant.TAEF2)) {
            assertEquals(taesd, sd.decoderFlops(8, 8).getAsLong());
            assertEquals(taef2, f2.decoderFlops(8, 8).getAsLong());
            assertEquals(2_223_243_264L, f2.decoderFlops(8, 8).getAsLong());
        }
    }
}

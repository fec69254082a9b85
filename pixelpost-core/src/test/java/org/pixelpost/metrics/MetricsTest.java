package org.pixelpost.metrics;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;
import org.pixelpost.io.Images;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

class MetricsTest {
    static Tensor real, blurred;

    @BeforeAll
    static void load(@TempDir Path dir) throws Exception {
        Engine.seed(0);
        List<Tensor> xs = new ArrayList<>();
        for (Path p : TestData.emojiPngs(dir)) xs.add(Images.load(p, 64));
        real = torch.stack(new TensorVector(xs.toArray(new Tensor[0])));
        real.retainReference();
        // a 3x3 box blur of the same images
        Tensor k = torch.ones(3, 1, 3, 3).div(Tensors.s(9));
        blurred = torch.conv2d(torch.replication_pad2d(real, new long[] {1, 1, 1, 1}), k, Tensors.opt(null),
            new long[] {1, 1}, new long[] {0, 0}, new long[] {1, 1}, 3);
        blurred.retainReference();
    }

    @Test
    void blurLosesHighFrequencyEnergyAndSharpness() {
        double hf = Metrics.highFrequencyEnergy(real, 0.5), hfBlur = Metrics.highFrequencyEnergy(blurred, 0.5);
        double lap = Metrics.laplacianVariance(real), lapBlur = Metrics.laplacianVariance(blurred);
        assertTrue(hfBlur < 0.5 * hf, hf + " -> " + hfBlur);
        assertTrue(lapBlur < 0.5 * lap, lap + " -> " + lapBlur);
        // a flat image has none
        assertEquals(0.0, Metrics.laplacianVariance(torch.full(new long[] {1, 3, 16, 16}, new org.bytedeco.pytorch.Scalar(0.3))), 1e-12);
    }

    @Test
    void highFrequencyErrorSplitsTheMeanSquaredError() {
        // a checkerboard error of +-0.1 lives at Nyquist only; a constant offset of 0.1 at frequency zero only
        float[] board = new float[2 * 3 * 8 * 8], flat = new float[2 * 3 * 8 * 8];
        for (int i = 0; i < board.length; i++) {
            int y = (i / 8) % 8, x = i % 8;
            board[i] = (x + y) % 2 == 0 ? 0.1f : -0.1f;
            flat[i] = 0.1f;
        }
        Tensor zero = torch.zeros(2, 3, 8, 8), b = Tensors.fromFloats(board, 2, 3, 8, 8), f = Tensors.fromFloats(flat, 2, 3, 8, 8);
        assertEquals(0.01, Metrics.highFrequencyError(b, zero, 0.5), 1e-7);
        assertEquals(0.0, Metrics.highFrequencyError(f, zero, 0.5), 1e-9);
        assertEquals(0.01, Metrics.highFrequencyError(f, zero, 0), 1e-7);
        // on real images the band above the cutoff is part of the whole error
        double all = Metrics.highFrequencyError(blurred, real, 0), high = Metrics.highFrequencyError(blurred, real, 0.5);
        assertEquals(Tensors.item(blurred.sub(real).square().mean()), all, 1e-6);
        assertTrue(high > 0 && high < all, high + " of " + all);
    }

    @Test
    void statisticsJudgeIgnoresPositionButSeesColourAndBlur() {
        double[] same = Metrics.statisticsDistance(real, real), blur = Metrics.statisticsDistance(blurred, real);
        // a mirrored image has the same colour statistics and nearly the same band energies (the pyramid's subsampling grid
        // shifts by a pixel): the second judge does not compare pixels one to one
        double[] mirrored = Metrics.statisticsDistance(torch.flip(real, new long[] {3}), real);
        Tensor tinted = real.mul(Tensors.s(0.8));
        double[] tint = Metrics.statisticsDistance(tinted, real);
        for (int i = 0; i < same.length; i++) {
            assertEquals(0.0, same[i], 1e-9);
            assertTrue(mirrored[i] < Math.min(0.1 * blur[i], 0.005), "mirror " + mirrored[i] + ", blur " + blur[i]);
            assertTrue(blur[i] > 0.01, "blur " + blur[i]);
            assertTrue(tint[i] > 0.01, "tint " + tint[i]);
        }
        // while the pixel judge does see the mirror
        double[] pixelMirror = Metrics.judgeDistance(torch.flip(real, new long[] {3}), real);
        assertTrue(java.util.Arrays.stream(pixelMirror).max().getAsDouble() > 0.001);
    }

    @Test
    void laplacianVarianceOfAKnownPattern() {
        // a checkerboard of 0 and 1: the Laplacian is -4 on ones and +4 on zeros, variance 16 (times the luma sum 1)
        float[] v = new float[3 * 8 * 8];
        for (int c = 0; c < 3; c++) for (int y = 0; y < 8; y++) for (int x = 0; x < 8; x++) v[c * 64 + y * 8 + x] = (x + y) % 2;
        Tensor board = Tensors.fromFloats(v, 1, 3, 8, 8);
        assertEquals(16 * 36.0 / 35.0, Metrics.laplacianVariance(board), 1e-4); // unbiased variance of 36 values of +-4
        // all of a checkerboard's energy sits at the highest frequency
        assertEquals(1.0, Metrics.highFrequencyEnergy(board, 0.5), 1e-6);
    }

    @Test
    void slicedWassersteinIsZeroForIdenticalSetsAndGrowsWithBlur() {
        double[] same = Metrics.slicedWasserstein(real, real, 3, 1);
        for (double d : same) assertEquals(0.0, d, 1e-9);
        double[] blur = Metrics.slicedWasserstein(blurred, real, 3, 1);
        assertTrue(blur[0] > 10, "finest level differs after a blur: " + blur[0]);
        assertTrue(blur[0] > blur[2], "and more than the coarsest: " + java.util.Arrays.toString(blur));
    }

    @Test
    void judgeDistanceIsZeroOnTheReferenceAndLargerForABlur() {
        double[] d0 = Metrics.judgeDistance(real, real), d1 = Metrics.judgeDistance(blurred, real);
        for (int i = 0; i < d0.length; i++) {
            assertEquals(0.0, d0[i], 1e-12);
            assertTrue(d1[i] > 0);
        }
    }
}

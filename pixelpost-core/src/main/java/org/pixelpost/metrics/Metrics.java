package org.pixelpost.metrics;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Automatic image metrics on batches {@code [N, 3, H, W]} in [0, 1]. Sharpness measures are
 * reported as ratios to the real images: closer to 1 is better, more is not.
 */
public final class Metrics {
    private Metrics() {}

    /** Luma {@code [N, 1, H, W]} (ITU-R BT.601 weights). */
    static Tensor gray(Tensor x) {
        Tensor w = Tensors.fromFloats(new float[] {0.299f, 0.587f, 0.114f}, 1, 3, 1, 1);
        return x.mul(w).sum(new long[] {1}, true, new org.bytedeco.pytorch.ScalarTypeOptional());
    }

    /** The 4-neighbour Laplacian of the luma, valid region only. */
    static Tensor laplacian(Tensor x) {
        Tensor k = Tensors.fromFloats(new float[] {0, 1, 0, 1, -4, 1, 0, 1, 0}, 1, 1, 3, 3);
        return torch.conv2d(gray(x), k);
    }

    /** Mean over images of the variance of the Laplacian: a standard focus measure. */
    public static double laplacianVariance(Tensor x) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor l = laplacian(x).flatten(1, -1);
            return Tensors.item(l.var(1).mean());
        }
    }

    /**
     * The part of the mean squared error between {@code a} and {@code b} ({@code [B, C, H, W]})
     * carried by spatial frequencies above {@code cutoff} of Nyquist (radially): by Parseval, the
     * error's spectral energy in that band over the number of elements. With cutoff 0 (and the
     * zero frequency included) it is the whole mean squared error.
     */
    public static double highFrequencyError(Tensor a, Tensor b, double cutoff) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor e = a.sub(b);                                                    // [B, C, H, W]
            long h = e.size(2), w = e.size(3);
            Tensor p = torch.fft_fft2(e).abs().square();                            // [B, C, H, W]
            Tensor m = Tensors.fromFloats(radialMask(h, w, cutoff), 1, 1, h, w);
            return Tensors.item(p.mul(m).sum()) / (h * w) / e.numel();
        }
    }

    /** 1 where a frequency's radius (as a share of Nyquist) is above {@code cutoff}, else 0; FFT order. */
    private static float[] radialMask(long h, long w, double cutoff) {
        float[] mask = new float[(int) (h * w)];
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++) {
                double fy = Math.min(i, h - i) / (h / 2.0), fx = Math.min(j, w - j) / (w / 2.0);
                mask[(int) (i * w + j)] = Math.sqrt(fy * fy + fx * fx) > cutoff || cutoff == 0 ? 1 : 0;
            }
        return mask;
    }

    /**
     * Mean over images of the share of spectral energy (luma, mean removed) at radial frequencies
     * above {@code cutoff} of Nyquist.
     */
    public static double highFrequencyEnergy(Tensor x, double cutoff) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor y = gray(x).squeeze(1);
            y = y.sub(y.mean(new long[] {1, 2}, true, new org.bytedeco.pytorch.ScalarTypeOptional()));
            Tensor p = torch.fft_fft2(y).abs().square();
            long h = y.size(1), w = y.size(2);
            float[] mask = new float[(int) (h * w)];
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    double fy = Math.min(i, h - i) / (h / 2.0), fx = Math.min(j, w - j) / (w / 2.0);
                    mask[(int) (i * w + j)] = Math.sqrt(fy * fy + fx * fx) > cutoff ? 1 : 0;
                }
            Tensor m = Tensors.fromFloats(mask, 1, h, w);
            Tensor hi = p.mul(m).sum(new long[] {1, 2}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
            Tensor all = p.sum(new long[] {1, 2}, false, new org.bytedeco.pytorch.ScalarTypeOptional()).add(Tensors.s(1e-12));
            return Tensors.item(hi.div(all).mean());
        }
    }

    /** Gaussian-pyramid levels of {@code x}, finest first: each level blurred (binomial 5x5) and halved. */
    public static List<Tensor> laplacianPyramid(Tensor x, int levels) {
        Tensor k1 = Tensors.fromFloats(new float[] {1, 4, 6, 4, 1}, 5).div(Tensors.s(16));
        Tensor k = k1.unsqueeze(1).mul(k1.unsqueeze(0)).view(1, 1, 5, 5).repeat(3, 1, 1, 1);
        List<Tensor> out = new ArrayList<>();
        Tensor cur = x;
        for (int l = 0; l < levels; l++) {
            Tensor blurred = torch.conv2d(torch.reflection_pad2d(cur, new long[] {2, 2, 2, 2}), k, Tensors.opt(null),
                new long[] {1, 1}, new long[] {0, 0}, new long[] {1, 1}, 3);
            if (l == levels - 1) {
                out.add(cur);
                break;
            }
            out.add(cur.sub(blurred)); // the band this level adds
            cur = everyOther(everyOther(blurred, 2), 3);
        }
        return out;
    }

    private static Tensor everyOther(Tensor t, long dim) {
        return t.slice(dim, new org.bytedeco.pytorch.LongOptional(0), new org.bytedeco.pytorch.LongOptional(t.size(dim)), 2);
    }

    /** 7x7x3 patches (flattened, 147 values) of a level at random positions. */
    static Tensor patches(Tensor level, int perImage, Random rnd) {
        long n = level.size(0), h = level.size(2), w = level.size(3);
        List<Tensor> ps = new ArrayList<>();
        for (long i = 0; i < n; i++)
            for (int k = 0; k < perImage; k++) {
                long y = rnd.nextInt((int) (h - 6)), x = rnd.nextInt((int) (w - 6));
                ps.add(level.select(0, i).narrow(1, y, 7).narrow(2, x, 7).flatten());
            }
        return torch.stack(new TensorVector(ps.toArray(new Tensor[0])));
    }

    /**
     * Sliced Wasserstein distance between two image sets, per Laplacian-pyramid level (finest first,
     * x 1e3): patches are normalised per channel by the pooled statistics, projected on random
     * unit directions, and the sorted projections compared. Equal sets give exactly 0.
     */
    public static double[] slicedWasserstein(Tensor a, Tensor b, int levels, long seed) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            List<Tensor> pa = laplacianPyramid(a, levels), pb = laplacianPyramid(b, levels);
            double[] out = new double[levels];
            for (int l = 0; l < levels; l++) {
                Tensor xa = patches(pa.get(l), 64, new Random(seed + l)), xb = patches(pb.get(l), 64, new Random(seed + l));
                long na = xa.size(0), nb = xb.size(0), n = Math.min(na, nb);
                xa = xa.narrow(0, 0, n);
                xb = xb.narrow(0, 0, n);
                Tensor both = torch.cat(new TensorVector(xa, xb), 0).view(-1, 3, 49);
                Tensor mean = both.mean(new long[] {0, 2}, true, new org.bytedeco.pytorch.ScalarTypeOptional());
                Tensor std = both.std(new long[] {0, 2}, true, true).add(Tensors.s(1e-8));
                xa = xa.view(-1, 3, 49).sub(mean).div(std).flatten(1, -1);
                xb = xb.view(-1, 3, 49).sub(mean).div(std).flatten(1, -1);
                torch.manual_seed(seed * 31 + l);
                Tensor dirs = torch.randn(147, 128);
                dirs = dirs.div(dirs.norm(new org.bytedeco.pytorch.ScalarOptional(Tensors.s(2)), new long[] {0}, true));
                Tensor sa = torch.sort(xa.matmul(dirs), 0, false).get0(), sb = torch.sort(xb.matmul(dirs), 0, false).get0();
                out[l] = Tensors.item(sa.sub(sb).abs().mean()) * 1e3;
            }
            return out;
        }
    }

    /** Per-image distance to a reference image: pixel MSE plus MSE of the image gradients (detail). */
    public static double[] judgeDistance(Tensor images, Tensor references) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor d = images.sub(references).square().flatten(1, -1).mean(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
            Tensor gi = gradients(images), gr = gradients(references);
            Tensor dg = gi.sub(gr).square().flatten(1, -1).mean(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
            return toDoubles(d.add(dg));
        }
    }

    /**
     * A second judge, built from other evidence than {@link #judgeDistance} (which compares pixels
     * and gradients one to one): per image, how far its colour and structure statistics are from its
     * reference's, position-free. Colour: each RGB channel's mean and standard deviation (absolute
     * differences, summed). Structure: the energy (mean square) of the two finest Laplacian-pyramid
     * bands, as absolute log ratios (summed, times 0.1 so that both parts have similar ranges on
     * emoji). 0 for identical statistics.
     */
    public static double[] statisticsDistance(Tensor images, Tensor references) {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor colour = moments(images).sub(moments(references)).abs().sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
            Tensor structure = bandEnergy(images).add(Tensors.s(1e-6)).div(bandEnergy(references).add(Tensors.s(1e-6))).log().abs()
                .sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
            return toDoubles(colour.add(structure.mul(Tensors.s(0.1))));
        }
    }

    /** Per image, each channel's mean and standard deviation: {@code [B, 6]}. */
    private static Tensor moments(Tensor x) {
        Tensor f = x.flatten(2, -1);                                                // [B, 3, HW]
        Tensor mean = f.mean(new long[] {2}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
        Tensor std = f.std(new long[] {2}, false, false);
        return torch.cat(new TensorVector(mean, std), 1);
    }

    /** Per image, the mean square of the luma of the two finest Laplacian-pyramid bands: {@code [B, 2]}. */
    private static Tensor bandEnergy(Tensor x) {
        List<Tensor> bands = laplacianPyramid(x, 3);
        List<Tensor> e = new ArrayList<>();
        for (int l = 0; l < 2; l++) e.add(gray(bands.get(l)).square().flatten(1, -1).mean(new long[] {1}, true, new org.bytedeco.pytorch.ScalarTypeOptional()));
        return torch.cat(new TensorVector(e.toArray(new Tensor[0])), 1);
    }

    /** Horizontal and vertical finite differences of the luma, stacked. */
    static Tensor gradients(Tensor x) {
        Tensor y = gray(x);
        Tensor dx = y.narrow(3, 1, y.size(3) - 1).sub(y.narrow(3, 0, y.size(3) - 1)).narrow(2, 0, y.size(2) - 1);
        Tensor dy = y.narrow(2, 1, y.size(2) - 1).sub(y.narrow(2, 0, y.size(2) - 1)).narrow(3, 0, y.size(3) - 1);
        return torch.cat(new TensorVector(dx, dy), 1);
    }

    static double[] toDoubles(Tensor t) {
        float[] f = Tensors.toFloats(t);
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) d[i] = f[i];
        return d;
    }
}

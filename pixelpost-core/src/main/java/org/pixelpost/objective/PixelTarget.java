package org.pixelpost.objective;

import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/**
 * What the pixel term compares against, fixed once per step: the rows, the crop (if any), the
 * decoder restricted to it, and the target image decoded without gradient. A DPO step applies it
 * to the model's and the reference's noise alike, so both see the same crop and the target is
 * decoded once.
 */
record PixelTarget(StepContext ctx, PixelTerm p, Tensor z, Tensor zT, Tensor t, Tensor idx, long[] crop,
                   UnaryOperator<Tensor> decode, UnaryOperator<Tensor> cropImage, Tensor image) {
    static PixelTarget of(StepContext ctx, PixelTerm p, Tensor z, Tensor zT, Tensor t, long[] rows) {
        Tensor idx = Tensors.follow(index(rows), z);
        Tensor zr = z.index_select(0, idx), zTr = zT.index_select(0, idx), tr = t.index_select(0, idx);
        Tensor targetLatent = Objectives.targetLatent(p.decode(), zr, zTr);
        UnaryOperator<Tensor> decode = ctx.decode(), cropImage = UnaryOperator.identity();
        long[] crop = null;
        int c = p.crop();
        long h = z.size(2), w = z.size(3);
        if (c > 0 && c < Math.min(h, w)) {
            // one crop per step; the margin gives the decoder context, and only the centre is compared
            long cy = ctx.gen().nextLong(h - c + 1), cx = ctx.gen().nextLong(w - c + 1), m = p.cropMargin();
            long y0 = Math.max(0, cy - m), x0 = Math.max(0, cx - m), y1 = Math.min(h, cy + c + m), x1 = Math.min(w, cx + c + m);
            crop = new long[] {y0, x0, y1 - y0, x1 - x0};
            targetLatent = cropLatent(targetLatent, crop);
            UnaryOperator<Tensor> full = ctx.decode();
            long oy = cy - y0, ox = cx - x0;
            long cropH = crop[2];
            cropImage = img -> {
                long s = img.size(2) / cropH;
                return img.narrow(2, oy * s, c * s).narrow(3, ox * s, c * s);
            };
            UnaryOperator<Tensor> cut = cropImage;
            decode = lat -> cut.apply(full.apply(lat));
        }
        Tensor image;
        // the decoder's intermediates are freed at once: only the target image is kept
        try (org.pixelpost.tensor.Scope s = org.pixelpost.tensor.Scope.open(); var g = Tensors.noGrad()) {
            image = s.keep(decode.apply(targetLatent));
        }
        return new PixelTarget(ctx, p, zr, zTr, tr, idx, crop, decode, cropImage, image);
    }

    /** The per-sample pixel term of a model whose implied noise is {@code epsHat} (all rows of the batch). */
    Tensor term(Tensor epsHat) {
        Tensor pred = Objectives.predictedLatent(p.decode(), ctx.schedule(), z, zT, epsHat.index_select(0, idx), t);
        if (crop != null) pred = cropLatent(pred, crop);
        return Objectives.pixel(decode, image, pred, p.decoderChunk());
    }

    /** The rows that take the pixel term: all, or a random {@code fraction} of them (sorted). */
    static long[] rows(StepContext ctx, PixelTerm p, long b) {
        long k = Math.max(1, Math.round(Math.ceil(p.fraction() * b)));
        if (k >= b) return java.util.stream.LongStream.range(0, b).toArray();
        float[] perm = Tensors.toFloats(ctx.gen().randperm(b).narrow(0, 0, k));
        long[] rows = new long[(int) k];
        for (int i = 0; i < k; i++) rows[i] = (long) perm[i];
        java.util.Arrays.sort(rows);
        return rows;
    }

    private static Tensor cropLatent(Tensor x, long[] crop) {
        return x.narrow(2, crop[0], crop[2]).narrow(3, crop[1], crop[3]);
    }

    static Tensor index(long[] rows) {
        float[] f = new float[rows.length];
        for (int i = 0; i < f.length; i++) f[i] = rows[i];
        return Tensors.fromFloats(f, f.length).to(torch.ScalarType.Long);
    }
}

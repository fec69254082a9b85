package org.pixelpost.train;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.diffusion.NoiseSchedule;
import org.pixelpost.diffusion.PredictionType;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.objective.Objectives;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.tensor.Tensors;

/**
 * One training step's loss for SFT and for preference objectives. Noise and timesteps come from
 * libtorch's generator, which the trainer seeds per step, so a step is a function of the seed and
 * the step number.
 */
public final class Steps {
    private Steps() {}

    /** How the loss is put together. */
    public record Options(NoiseSchedule schedule, UnaryOperator<Tensor> decode, double latentWeight, double pixelWeight,
                          PixelDecode pixelDecode, double pixelFraction, int pixelCrop, int pixelCropMargin, int decoderChunk,
                          boolean dpo, double beta, double gamma) {
        public static Options of(TrainConfig c, NoiseSchedule schedule, UnaryOperator<Tensor> decode) {
            return new Options(schedule, decode, c.latentWeight(), c.pixelWeight(), PixelDecode.of(c.pixelDecode()),
                c.pixelFraction(), c.pixelCrop(), c.pixelCropMargin(), c.decoderChunk(), c.objective().equals("dpo"), c.beta(), c.gamma());
        }
    }

    /** The loss to back-propagate and the terms to log. */
    public record Result(Tensor loss, Map<String, Double> terms) {}

    /** Supervised fine-tuning, Eq. 3: {@code latentWeight * L_latent + lambda * L_pixel}. */
    public static Result sft(Denoiser model, Options o, Tensor z, Tensor tokens, Tensor mask) {
        long b = z.size(0);
        Tensor t = torch.randint(o.schedule.numTrainTimesteps(), new long[] {b}).to(torch.ScalarType.Long);
        Tensor eps = torch.randn_like(z);
        Tensor zT = o.schedule.addNoise(z, eps, t);
        PredictionType type = model.predictionType();
        Tensor out = model.forward(zT, t, tokens, mask);
        Tensor latent = Objectives.latent(out, o.schedule.target(type, z, eps, t));
        Tensor pixel = o.pixelWeight != 0 ? PixelTarget.of(o, z, zT, t, pixelRows(o, b)).term(o.schedule.epsilon(type, out, zT, t)) : null;
        Tensor loss = Objectives.sft(o.latentWeight != 0 ? latent : null, pixel, o.latentWeight, o.pixelWeight);
        Map<String, Double> terms = new LinkedHashMap<>();
        terms.put("loss", Tensors.item(loss));
        terms.put("latent", Tensors.item(latent.mean()));
        if (pixel != null) terms.put("pixel", Tensors.item(pixel.mean()));
        return new Result(loss, terms);
    }

    /**
     * Preference fine-tuning: DPO with a frozen reference (Eq. 4 and its pixel counterpart) or SimPO
     * without one (Eqs. 5, 6), combined as {@code L_latent + mu L_pixel} (Eq. 7). Winner and loser
     * of a pair share the noise and the timestep.
     */
    public static Result preference(Denoiser model, Denoiser reference, Options o, Tensor zW, Tensor zL, Tensor tokens, Tensor mask) {
        if (o.dpo && reference == null) throw new IllegalArgumentException("DPO needs a reference model");
        long b = zW.size(0);
        Tensor t = torch.randint(o.schedule.numTrainTimesteps(), new long[] {b}).to(torch.ScalarType.Long);
        Tensor eps = torch.randn_like(zW);
        Tensor t2 = cat(t, t), eps2 = cat(eps, eps), z2 = cat(zW, zL);
        Tensor zT2 = o.schedule.addNoise(z2, eps2, t2);
        Tensor tok2 = cat(tokens, tokens), mask2 = cat(mask, mask);
        PredictionType type = model.predictionType();
        Tensor out = model.forward(zT2, t2, tok2, mask2);
        Tensor target = o.schedule.target(type, z2, eps2, t2);
        Tensor latent = Objectives.latent(out, target);
        Tensor refLatent = null, refOut = null;
        if (o.dpo) {
            try (var g = Tensors.noGrad()) {
                refOut = reference.forward(zT2, t2, tok2, mask2);
                refLatent = Objectives.latent(refOut, target);
            }
        }
        Tensor latentMargin = margin(o, latent, refLatent, b);
        Tensor latentLoss = Objectives.preference(latentMargin);
        Map<String, Double> terms = new LinkedHashMap<>();
        Tensor pixelLoss = null;
        if (o.pixelWeight != 0) {
            long[] rows = pixelRows(o, b);
            long[] rows2 = new long[rows.length * 2];
            for (int i = 0; i < rows.length; i++) {
                rows2[i] = rows[i];
                rows2[rows.length + i] = rows[i] + b;
            }
            PixelTarget pixelTarget = PixelTarget.of(o, z2, zT2, t2, rows2);
            Tensor pixel = pixelTarget.term(o.schedule.epsilon(type, out, zT2, t2));
            Tensor refPixel = null;
            if (o.dpo) {
                try (var g = Tensors.noGrad()) {
                    refPixel = pixelTarget.term(o.schedule.epsilon(type, refOut, zT2, t2));
                }
            }
            Tensor pixelMargin = margin(o, pixel, refPixel, rows.length);
            pixelLoss = Objectives.preference(pixelMargin);
            terms.put("pixel_loss", Tensors.item(pixelLoss));
            terms.put("pixel_accuracy", Objectives.accuracy(pixelMargin));
            terms.put("pixel_margin", Tensors.item(pixelMargin.mean()));
        }
        Tensor loss = Objectives.combined(o.latentWeight != 0 ? latentLoss : null, pixelLoss, o.latentWeight, o.pixelWeight);
        Map<String, Double> all = new LinkedHashMap<>();
        all.put("loss", Tensors.item(loss));
        all.put("latent_loss", Tensors.item(latentLoss));
        all.put("accuracy", Objectives.accuracy(latentMargin));
        all.put("margin", Tensors.item(latentMargin.mean()));
        all.put("model_w", Tensors.item(latent.narrow(0, 0, b).mean()));
        all.put("model_l", Tensors.item(latent.narrow(0, b, b).mean()));
        all.putAll(terms);
        return new Result(loss, all);
    }

    /** Per-pair margins of a term laid out as [winners; losers]. */
    private static Tensor margin(Options o, Tensor model, Tensor ref, long pairs) {
        Tensor w = model.narrow(0, 0, pairs), l = model.narrow(0, pairs, pairs);
        return o.dpo ? Objectives.dpoMargin(w, l, ref.narrow(0, 0, pairs), ref.narrow(0, pairs, pairs), o.beta)
                     : Objectives.simpoMargin(w, l, o.beta, o.gamma);
    }

    /** The rows that take the pixel term: all, or a random {@code pixelFraction} of them (sorted). */
    static long[] pixelRows(Options o, long b) {
        long k = Math.max(1, Math.round(Math.ceil(o.pixelFraction * b)));
        if (k >= b) return java.util.stream.LongStream.range(0, b).toArray();
        float[] perm = Tensors.toFloats(torch.randperm(b).narrow(0, 0, k));
        long[] rows = new long[(int) k];
        for (int i = 0; i < k; i++) rows[i] = (long) perm[i];
        java.util.Arrays.sort(rows);
        return rows;
    }

    /**
     * What the pixel term compares against, fixed once per step: the rows, the crop (if any), the
     * decoder restricted to it, and the target image decoded without gradient. A DPO step applies it
     * to the model's and the reference's noise alike, so both see the same crop and the target is
     * decoded once.
     */
    record PixelTarget(Options o, Tensor z, Tensor zT, Tensor t, Tensor idx, long[] crop, UnaryOperator<Tensor> decode, Tensor image) {
        static PixelTarget of(Options o, Tensor z, Tensor zT, Tensor t, long[] rows) {
            Tensor idx = index(rows);
            Tensor zr = z.index_select(0, idx), zTr = zT.index_select(0, idx), tr = t.index_select(0, idx);
            Tensor targetLatent = Objectives.targetLatent(o.pixelDecode, zr, zTr);
            UnaryOperator<Tensor> decode = o.decode;
            long[] crop = null;
            int c = o.pixelCrop;
            long h = z.size(2), w = z.size(3);
            if (c > 0 && c < Math.min(h, w)) {
                // one crop per step; the margin gives the decoder context, and only the centre is compared
                long cy = randint(h - c + 1), cx = randint(w - c + 1), m = o.pixelCropMargin;
                long y0 = Math.max(0, cy - m), x0 = Math.max(0, cx - m), y1 = Math.min(h, cy + c + m), x1 = Math.min(w, cx + c + m);
                crop = new long[] {y0, x0, y1 - y0, x1 - x0};
                targetLatent = cropLatent(targetLatent, crop);
                UnaryOperator<Tensor> full = o.decode;
                long oy = cy - y0, ox = cx - x0;
                decode = lat -> {
                    Tensor img = full.apply(lat);
                    long s = img.size(2) / lat.size(2);
                    return img.narrow(2, oy * s, c * s).narrow(3, ox * s, c * s);
                };
            }
            Tensor image;
            try (var g = Tensors.noGrad()) {
                image = decode.apply(targetLatent);
            }
            return new PixelTarget(o, zr, zTr, tr, idx, crop, decode, image);
        }

        /** The per-sample pixel term of a model whose implied noise is {@code epsHat} (all rows of the batch). */
        Tensor term(Tensor epsHat) {
            Tensor pred = Objectives.predictedLatent(o.pixelDecode, o.schedule, z, zT, epsHat.index_select(0, idx), t);
            if (crop != null) pred = cropLatent(pred, crop);
            return Objectives.pixel(decode, image, pred, o.decoderChunk);
        }

        private static Tensor cropLatent(Tensor x, long[] crop) {
            return x.narrow(2, crop[0], crop[2]).narrow(3, crop[1], crop[3]);
        }
    }

    private static long randint(long n) {
        return n <= 1 ? 0 : (long) Tensors.item(torch.randint(n, new long[] {1}));
    }

    static Tensor index(long[] rows) {
        float[] f = new float[rows.length];
        for (int i = 0; i < f.length; i++) f[i] = rows[i];
        return Tensors.fromFloats(f, f.length).to(torch.ScalarType.Long);
    }

    static Tensor cat(Tensor a, Tensor b) {
        return torch.cat(new TensorVector(a, b), 0);
    }
}

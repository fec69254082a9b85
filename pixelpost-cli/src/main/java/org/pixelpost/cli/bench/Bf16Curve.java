package org.pixelpost.cli.bench;

import java.util.LinkedHashMap;
import java.util.Map;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.Loss;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Autocast;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.train.AdamW;

/**
 * What bf16 autocast does to training: the same model from the same start, the same batches and
 * draws, trained in fp32 and under bf16 autocast (weights and optimizer in fp32 both times), and
 * the two loss curves compared step by step.
 */
final class Bf16Curve {
    private Bf16Curve() {}

    static Map<String, Object> run(String size, int batch, int steps) throws java.io.IOException {
        double[][] fp32 = train(size, batch, steps, false), bf16 = train(size, batch, steps, true);
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("steps", steps);
        o.put("objective", "latent + pixel (lambda 8), AdamW lr 1e-4");
        String[] terms = {"loss", "latent", "pixel"};
        for (int k = 0; k < terms.length; k++) {
            double rel = 0, a = 0, b = 0;
            int tail = Math.max(1, steps / 10);
            for (int i = 0; i < steps; i++) {
                rel += Math.abs(bf16[k][i] - fp32[k][i]) / Math.abs(fp32[k][i]);
                if (i >= steps - tail) {
                    a += fp32[k][i] / tail;
                    b += bf16[k][i] / tail;
                }
            }
            Map<String, Object> t = new LinkedHashMap<>();
            t.put("mean_relative_difference", round(rel / steps));
            t.put("fp32_first", round(fp32[k][0]));
            t.put("fp32_last_tenth_mean", round(a));
            t.put("bf16_last_tenth_mean", round(b));
            t.put("last_tenth_relative_difference", round(Math.abs(b - a) / Math.abs(a)));
            o.put(terms[k], t);
        }
        o.put("seconds_fp32", round(fp32[3][0]));
        o.put("seconds_bf16", round(bf16[3][0]));
        return o;
    }

    /** Per-step loss, latent and pixel terms, and [3][0] the seconds it took. */
    private static double[][] train(String size, int batch, int steps, boolean bf16) throws java.io.IOException {
        Engine.seed(0);
        double[][] out = new double[4][steps];
        try (TextToImageModel m = TextToImageModel.create(size, "taef2", 64, 1.0); Generator gen = Generator.seeded(0);
             Scope outer = Scope.open();
             AdamW opt = new AdamW(m.denoiser.module().parameters(), 0.9, 0.999, 1e-8, 0)) {
            StepContext ctx = new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), m::decodeLatents, gen);
            Batch b = TrainBench.syntheticBatch(m, batch);
            Sft objective = new Sft(1, PixelTerm.of(8));
            long t0 = System.nanoTime();
            for (int i = 0; i < steps; i++) {
                try (Scope s = Scope.open()) {
                    Loss l;
                    try (Autocast a = Autocast.bf16(bf16)) {
                        l = objective.loss(ctx, b);
                    }
                    l.loss().backward();
                    opt.step(1e-4);
                    opt.zeroGrad();
                    out[0][i] = l.terms().get("loss");
                    out[1][i] = l.terms().get("latent");
                    out[2][i] = l.terms().get("pixel");
                }
                if ((i + 1) % 20 == 0) System.err.printf("bf16 curve: %s step %d/%d loss %.5f%n", bf16 ? "bf16" : "fp32", i + 1, steps, out[0][i]);
            }
            out[3][0] = (System.nanoTime() - t0) / 1e9;
        }
        return out;
    }

    private static double round(double v) {
        return Math.round(v * 1e6) / 1e6;
    }
}

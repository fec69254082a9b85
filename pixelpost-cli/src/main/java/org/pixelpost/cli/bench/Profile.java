package org.pixelpost.cli.bench;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.autoencoder.TinyAutoencoder;
import org.pixelpost.nn.Layer;
import org.pixelpost.nn.Sequential;
import org.pixelpost.objective.Objectives;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.AdamW;

/**
 * Where a training step's time goes: the latent + pixel step (lambda 8) cut into its phases, the
 * decoder layer by layer, and the fixed cost of calling libtorch from Java. libtorch's own
 * profiler cannot be driven through the JavaCPP presets (its callbacks are not mapped), so the
 * phases are timed from Java around the same calls the objective makes.
 */
final class Profile {
    private Profile() {}

    private static final String[] PHASES = {"draws and noising", "denoiser forward", "latent term", "target decode (no grad)",
        "predicted decode forward", "pixel term", "backward", "AdamW update", "zero gradients", "free the step's tensors"};

    static String of(TextToImageModel m, AdamW opt, StepContext ctx, int iters, int batch) {
        org.pixelpost.objective.Batch data = TrainBench.syntheticBatch(m, batch);
        Tensor z = data.z(), tokens = data.cond().tokens(), mask = data.cond().mask();

        NoiseSchedule s = ctx.schedule();
        StringBuilder b = new StringBuilder();
        b.append(phases(String.format("One latent-only training step (batch %d), median of %d, ms", batch, iters), LATENT_PHASES, iters, mark -> {
            Tensor[] d = drawAndPredict(ctx, z, tokens, mask, mark);   // t, eps, zT, epsHat
            Tensor loss = Objectives.latent(d[3], d[1]).mean();
            mark.run();
            backwardAndUpdate(loss, opt, mark);
        }));
        b.append(phases(String.format("One latent + pixel training step (batch %d, %s), median of %d, ms", batch,
            m.denoiser.module().getClass().getSimpleName(), iters), PHASES, iters, mark -> {
            Tensor[] d = drawAndPredict(ctx, z, tokens, mask, mark);   // t, eps, zT, epsHat
            Tensor tt = d[0], zT = d[2], epsHat = d[3];
            Tensor latent = Objectives.latent(epsHat, d[1]).mean();
            mark.run();
            Tensor target;
            try (var ng = Tensors.noGrad()) {
                target = m.decodeLatents(zT);
            }
            mark.run();
            Tensor image = m.decodeLatents(s.addNoise(z, epsHat, tt));
            mark.run();
            Tensor loss = Objectives.sft(latent, Objectives.latent(image, target).mul(Tensors.s(4)), 1, 8);
            mark.run();
            backwardAndUpdate(loss, opt, mark);
        }));
        if (m.autoencoder.decoder() instanceof Sequential dec) b.append(layers(dec, m, z, iters));
        com.fasterxml.jackson.databind.JsonNode cfg = m.denoiser.configJson();
        if (cfg.has("hidden_size") && cfg.has("patch_size")) b.append(gemms(cfg, batch, (int) tokens.size(1))); // a transformer's products
        b.append(callCosts());
        return b.toString();
    }

    /** The step's first two phases: timesteps and noise drawn and the latents noised; the denoiser's prediction. */
    private static Tensor[] drawAndPredict(StepContext ctx, Tensor z, Tensor tokens, Tensor mask, Runnable mark) {
        NoiseSchedule s = ctx.schedule();
        Tensor tt = ctx.gen().randint(s.numTrainTimesteps(), z.size(0));
        Tensor eps = ctx.gen().randnLike(z);
        Tensor zT = s.addNoise(z, eps, tt);
        mark.run();
        Tensor epsHat = ctx.model().forward(zT, tt, org.pixelpost.model.Conditioning.of(tokens, mask));
        mark.run();
        return new Tensor[] {tt, eps, zT, epsHat};
    }

    /** The step's last phases: backward, the update (lr 0: its full cost, the weights unchanged), zeroing the gradients. */
    private static void backwardAndUpdate(Tensor loss, AdamW opt, Runnable mark) {
        loss.backward();
        mark.run();
        opt.step(0);
        mark.run();
        opt.zeroGrad();
        mark.run();
    }

    private static final String[] LATENT_PHASES = {"draws and noising", "denoiser forward", "latent term", "backward", "AdamW update",
        "zero gradients", "free the step's tensors"};

    /**
     * Runs {@code step} (in a scope of its own) 2 + {@code iters} times; the step calls its argument
     * at the end of each phase but the last, which is the scope's closing. The table: each phase's
     * median, its share of the median step.
     */
    private static String phases(String title, String[] names, int iters, java.util.function.Consumer<Runnable> step) {
        double[][] t = new double[names.length][iters];
        double[] total = new double[iters];
        for (int it = -2; it < iters; it++) {
            long[] mark = new long[names.length + 1];
            int[] k = {0};
            mark[k[0]++] = System.nanoTime();
            try (Scope sc = Scope.open()) {
                step.accept(() -> mark[k[0]++] = System.nanoTime());
            }
            mark[k[0]] = System.nanoTime();
            if (it < 0) continue;
            for (int p = 0; p < names.length; p++) t[p][it] = (mark[p + 1] - mark[p]) / 1e6;
            total[it] = (mark[names.length] - mark[0]) / 1e6;
        }
        StringBuilder b = new StringBuilder(title).append(String.format("%n%n%-28s %9s %7s%n", "phase", "ms", "share"));
        double all = median(total);
        for (int p = 0; p < names.length; p++) b.append(String.format("%-28s %9.2f %6.1f%%%n", names[p], median(t[p]), 100 * median(t[p]) / all));
        return b.append(String.format("%-28s %9.2f%n%n", "step", all)).toString();
    }

    /**
     * The denoiser's matrix products one by one at the step's shapes (rows x in -> out), forward
     * and forward + backward, and the GFLOP/s each reaches: the ceiling of a step made of them.
     */
    private static String gemms(com.fasterxml.jackson.databind.JsonNode c, int batch, int textTokens) {
        long side = c.path("sample_size").asLong() / c.path("patch_size").asLong();
        long d = c.path("hidden_size").asLong(), n = batch * side * side, t = (long) batch * textTokens;
        long h = (long) (d * c.path("mlp_ratio").asDouble(4.0));
        long[][] shapes = {{n, d, 3 * d}, {n, d, d}, {t, d, 2 * d}, {n, d, h}, {n, h, d}};
        String[] names = {"attn.qkv", "attn.proj, cross q and proj", "cross_attn.kv_linear", "mlp.fc1", "mlp.fc2"};
        StringBuilder b = new StringBuilder(String.format("The denoiser's matrix products at this step's shapes (%d BLAS thread(s)), GFLOP/s%n%n", org.pixelpost.tensor.Engine.blasThreads()));
        b.append(String.format("%-30s %-18s %9s %9s%n", "layer", "rows x in -> out", "forward", "fwd+bwd"));
        for (int i = 0; i < shapes.length; i++) {
            long[] s = shapes[i];
            Tensor x = torch.randn(s[0], s[1]), w = torch.randn(s[2], s[1]).set_requires_grad(true), bias = torch.randn(s[2]);
            int reps = 20;
            double fl = 2.0 * s[0] * s[1] * s[2] * reps, f, fb;
            try (var ng = Tensors.noGrad()) {
                f = BenchCommand.medianMs(2, 7, () -> { for (int r = 0; r < reps; r++) torch.linear(x, w, Tensors.opt(bias)); });
            }
            Tensor xg = x.detach().set_requires_grad(true);
            fb = BenchCommand.medianMs(2, 7, () -> { for (int r = 0; r < reps; r++) torch.linear(xg, w, Tensors.opt(bias)).sum().backward(); });
            b.append(String.format("%-30s %-18s %9.1f %9.1f%n", names[i], s[0] + " x " + s[1] + " -> " + s[2], fl / f / 1e6, 3 * fl / fb / 1e6));
        }
        return b.append('\n').toString();
    }

    /** Each decoder layer's forward and forward + backward to its input, on the activations the decoder really sees. */
    private static String layers(Sequential dec, TextToImageModel m, Tensor z, int iters) {
        StringBuilder b = new StringBuilder(String.format("Decoder layer by layer (input %s, channels-last), median ms; each time includes one copy of the layer's input%n%n", Arrays.toString(Tensors.shape(z))));
        b.append(String.format("%-4s %-18s %-18s %9s %11s%n", "#", "layer", "output", "forward", "fwd+bwd"));
        Tensor x = z.contiguous(torch.MemoryFormat.ChannelsLast);
        x.retainReference();
        double sumF = 0, sumB = 0;
        for (int i = 0; i < dec.size(); i++) {
            Layer l = dec.layer(i);
            Tensor in = x;
            double f, fb;
            try (var ng = Tensors.noGrad()) {
                f = BenchCommand.medianMs(1, iters, () -> l.forward(in.clone()));
            }
            fb = BenchCommand.medianMs(1, iters, () -> {
                Tensor xi = in.detach().set_requires_grad(true);
                l.forward(xi.clone()).sum().backward(); // a copy: in-place layers may not write into a leaf
            });
            Tensor y;
            try (Scope sc = Scope.open(); var ng = Tensors.noGrad()) {
                y = sc.keep(l.forward(in.clone()));
            }
            sumF += f;
            sumB += fb;
            String name = l instanceof org.pixelpost.nn.Module mod ? mod.getClass().getSimpleName() : "function";
            b.append(String.format("%-4d %-18s %-18s %9.2f %11.2f%n", i, name, Arrays.toString(Tensors.shape(y)), f, fb));
            x = y;
            in.releaseReference();
            x.retainReference();
        }
        x.releaseReference();
        b.append(String.format("%-42s %9.2f %11.2f%n%n", "sum", sumF, sumB));
        return b.toString();
    }

    /** What a call costs before any arithmetic: the floor under many small operations. */
    private static String callCosts() {
        int n = 2000;
        Map<String, Double> c = new LinkedHashMap<>();
        Tensor one = torch.ones(1), other = torch.ones(1);
        Scalar s = Tensors.s(1);
        c.put("add_ of two 1-element tensors", BenchCommand.medianMs(1, 5, () -> { for (int i = 0; i < n; i++) one.add_(other); }) * 1000 / n);
        c.put("add_ of a Scalar (made once)", BenchCommand.medianMs(1, 5, () -> { for (int i = 0; i < n; i++) one.add_(s); }) * 1000 / n);
        c.put("new Scalar", BenchCommand.medianMs(1, 5, () -> { for (int i = 0; i < n; i++) Tensors.s(1); }) * 1000 / n);
        c.put("add of two 1-element tensors (new result)", BenchCommand.medianMs(1, 5, () -> { for (int i = 0; i < n; i++) one.add(other); }) * 1000 / n);
        c.put("open and close a Scope", BenchCommand.medianMs(1, 5, () -> { for (int i = 0; i < n; i++) Scope.open().close(); }) * 1000 / n);
        StringBuilder b = new StringBuilder("Fixed cost of a call from Java, microseconds\n\n");
        c.forEach((k, v) -> b.append(String.format("%-44s %7.2f%n", k, v)));
        return b.toString();
    }

    private static double median(double[] v) {
        double[] c = v.clone();
        Arrays.sort(c);
        return c[c.length / 2];
    }
}

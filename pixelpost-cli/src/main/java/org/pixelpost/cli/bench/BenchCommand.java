package org.pixelpost.cli.bench;

import org.pixelpost.cli.Json;
import org.pixelpost.cli.Launcher;
import org.pixelpost.cli.TrainCommand;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.io.check.Checks;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.pipeline.Sampler;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "bench", mixinStandardHelpOptions = true, description = "Speed and memory figures (not pass/fail).",
    subcommands = {BenchCommand.AutoencoderBench.class, BenchCommand.SampleBench.class, TrainBench.class, PixelDecoderBench.class, TextEncoderBench.class})
public final class BenchCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** Resident set size of this process now in MiB (VmRSS), or -1 where /proc is absent. */
    static double currentRssMiB() {
        return procStatusMiB("VmRSS:");
    }

    /** Peak resident set size of this process in MiB (VmHWM), or -1 where /proc is absent. */
    static double peakRssMiB() {
        return procStatusMiB("VmHWM:");
    }

    /** A kB field of {@code /proc/self/status} in MiB, or -1 where /proc is absent. */
    private static double procStatusMiB(String field) {
        try {
            for (String l : Files.readAllLines(Paths.get("/proc/self/status")))
                if (l.startsWith(field)) return Long.parseLong(l.replaceAll("\\D", "")) / 1024.0;
        } catch (Exception ignored) {
            // not Linux
        }
        return -1;
    }

    /**
     * GFLOP/s of a 1024 x 1024 x 1024 float32 matrix product through the BLAS library with
     * {@code blasThreads} threads (the engine's setting is restored afterwards): the best of 10
     * runs after 3 warm-ups.
     */
    static double gemmGflops(int blasThreads) {
        Engine.setBlasThreadsTemporarily(blasThreads);
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor a = torch.randn(1024, 1024), b = torch.randn(1024, 1024);
            return 2.0 * 1024 * 1024 * 1024 / (bestMs(3, 10, () -> a.mm(b)) * 1e6);
        } finally {
            Engine.setBlasThreadsTemporarily(Engine.blasThreads());
        }
    }

    /**
     * GFLOP/s of the same product through oneDNN, libtorch's convolution library, on every
     * intra-op thread: a 1x1 convolution of 1024 channels over 32 x 32 positions (channels-last).
     * The best of 10 runs after 3 warm-ups.
     */
    static double onednnGemmGflops() {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor x = torch.randn(1, 1024, 32, 32).contiguous(torch.MemoryFormat.ChannelsLast);
            Tensor w = torch.randn(1024, 1024, 1, 1).contiguous(torch.MemoryFormat.ChannelsLast);
            return 2.0 * 1024 * 1024 * 1024 / (bestMs(3, 10, () -> torch.conv2d(x, w, Tensors.opt(null), new long[] {1, 1},
                new long[] {0, 0}, new long[] {1, 1}, 1)) * 1e6);
        }
    }

    /**
     * The machine's float32 matrix-product peak as this process can reach it, GFLOP/s: the better of
     * the BLAS library on every core and oneDNN on every core (convolutions run through oneDNN and
     * reach more than BLAS on some machines, so a BLAS-only peak would give utilisations above 1).
     * Also the BLAS figure with the engine's own threads.
     */
    static Map<String, Object> gemmPeaks() {
        Map<String, Object> o = new LinkedHashMap<>();
        int cores = Runtime.getRuntime().availableProcessors();
        double blas = gemmGflops(cores), dnnl = onednnGemmGflops();
        o.put("gemm_peak_gflops", Math.round(Math.max(blas, dnnl) * 10) / 10.0);
        o.put("gemm_peak_cores", cores);
        o.put("blas_all_cores_gflops", Math.round(blas * 10) / 10.0);
        o.put("onednn_all_cores_gflops", Math.round(dnnl * 10) / 10.0);
        o.put("gemm_engine_gflops", Math.round(gemmGflops(Engine.blasThreads()) * 10) / 10.0);
        o.put("engine_blas_threads", Engine.blasThreads());
        return o;
    }

    /** The fastest of {@code iters} runs after {@code warmup}, in ms: a peak, not a typical time. */
    static double bestMs(int warmup, int iters, Runnable r) {
        double best = Double.MAX_VALUE;
        for (int i = 0; i < warmup + iters; i++) {
            try (Scope s = Scope.open()) {
                long t0 = System.nanoTime();
                r.run();
                if (i >= warmup) best = Math.min(best, (System.nanoTime() - t0) / 1e6);
            }
        }
        return best;
    }

    /** A row's work and speed: GFLOP, achieved GFLOP/s and the share of {@code peak} (MFU). */
    static Map<String, Object> flops(double flop, double ms, double peak) {
        Map<String, Object> o = new LinkedHashMap<>();
        double gflops = flop / (ms * 1e6);
        o.put("gflop", Math.round(flop / 1e7) / 100.0);
        o.put("gflops", Math.round(gflops * 10) / 10.0);
        o.put("mfu", Math.round(gflops / peak * 1000) / 1000.0);
        return o;
    }

    /** Median milliseconds of {@code iters} runs after {@code warmup} runs, each in its own scope. */
    static double medianMs(int warmup, int iters, Runnable r) {
        double[] t = new double[iters];
        for (int i = 0; i < warmup + iters; i++) {
            try (Scope s = Scope.open()) {
                long t0 = System.nanoTime();
                r.run();
                if (i >= warmup) t[i - warmup] = (System.nanoTime() - t0) / 1e6;
            }
        }
        java.util.Arrays.sort(t);
        return t[iters / 2];
    }

    @Command(name = "autoencoder", mixinStandardHelpOptions = true,
        description = "Encode and decode time for a batch at a size, and the peak RSS.")
    static final class AutoencoderBench implements Callable<Integer> {
        @Option(names = "--autoencoder", defaultValue = "taef2") String autoencoder;
        @Option(names = "--batch", defaultValue = "16") int batch;
        @Option(names = "--size", defaultValue = "64") int size;
        @Option(names = "--iters", defaultValue = "10") int iters;
        @Option(names = "--json") boolean json;

        @Override
        public Integer call() throws Exception {
            Engine.start();
            Engine.seed(0);
            Autoencoder ae = Autoencoders.load(autoencoder);
            Tensor x = torch.rand(batch, 3, size, size);
            Tensor z;
            try (var g = Tensors.noGrad()) {
                z = ae.encode(x);
            }
            Tensor zf = z;
            double enc, dec, decBack;
            try (var g = Tensors.noGrad()) {
                enc = medianMs(2, iters, () -> ae.encode(x));
                dec = medianMs(2, iters, () -> ae.decode(zf));
            }
            decBack = medianMs(2, iters, () -> {
                Tensor zi = zf.detach().set_requires_grad(true);
                ae.decode(zi).square().mean().backward();
            });
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("autoencoder", ae.name());
            o.put("batch", batch);
            o.put("size", size);
            o.put("threads", Engine.threads());
            o.put("encode_ms", Math.round(enc * 10) / 10.0);
            o.put("decode_ms", Math.round(dec * 10) / 10.0);
            o.put("decode_backward_ms", Math.round(decBack * 10) / 10.0);
            o.put("peak_rss_mib", Math.round(peakRssMiB()));
            if (json) System.out.println(Json.write(o));
            else o.forEach((k, v) -> System.out.printf("%-20s %s%n", k, v));
            return 0;
        }
    }

    @Command(name = "sample", mixinStandardHelpOptions = true,
        description = "Seconds per image for DDIM sampling with guidance on a fresh DiT over TAEF2 (64x64).")
    static final class SampleBench implements Callable<Integer> {
        @Option(names = "--size", defaultValue = "tiny", description = "DiT size (default: ${DEFAULT-VALUE})") String size;
        @Option(names = "--steps", defaultValue = "50") int steps;
        @Option(names = "--images", defaultValue = "8", description = "images in one batch (default: ${DEFAULT-VALUE})") int images;
        @Option(names = "--guidance", defaultValue = "4.5") double guidance;
        @Option(names = "--concurrent-batches", defaultValue = "1", paramLabel = "N", description = "the images as N groups at once, each on its own thread (default: ${DEFAULT-VALUE})")
        int concurrentBatches;
        @Option(names = "--json") boolean json;

        @Override
        public Integer call() throws Exception {
            Engine.seed(0);
            try (org.pixelpost.pipeline.TextToImageModel m = org.pixelpost.pipeline.TextToImageModel.create(size, "taef2", 64, 1.0)) {
                Sampler sampler = m.sampler();
                java.util.List<String> prompts = java.util.Collections.nCopies(images, "grinning face");
                long[] seeds = java.util.stream.LongStream.range(0, images).toArray();
                Checks.atLeast("--concurrent-batches", concurrentBatches, 1);
                Sampler.Settings s = new Sampler.Settings(steps, guidance, 0, 0, concurrentBatches);
                sampler.sample(prompts.subList(0, 1), new long[] {0}, new Sampler.Settings(2, guidance, 0), null); // warm-up
                long t0 = System.nanoTime();
                sampler.sample(prompts, seeds, s, null);
                double secs = (System.nanoTime() - t0) / 1e9;
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("denoiser", size);
                o.put("parameters", m.denoiser.module().parameterCount());
                o.put("steps", steps);
                o.put("guidance", guidance);
                o.put("images", images);
                o.put("threads", Engine.threads());
                o.put("concurrent_batches", concurrentBatches);
                o.put("seconds_per_image", Math.round(secs / images * 1000) / 1000.0);
                // work per image: a denoiser forward per step (two with guidance: conditional and unconditional), one decode
                long tokens = m.textEncoder.encode(java.util.List.of("", "grinning face")).tokens().size(1);
                double perImage = (guidance > 1 ? 2 : 1) * (double) steps
                    * m.denoiser.forwardFlops((int) tokens).orElse(0)
                    + m.autoencoder.decoderFlops(m.latentSize(), m.latentSize()).orElse(0);
                Map<String, Object> f = gemmPeaks();
                f.putAll(flops(perImage, secs / images * 1000, (double) f.get("gemm_peak_gflops")));
                o.put("flops", f);
                o.put("peak_rss_mib", Math.round(peakRssMiB()));
                if (json) System.out.println(Json.write(o));
                else o.forEach((k, v) -> System.out.printf("%-20s %s%n", k, v));
            }
            return 0;
        }
    }
}

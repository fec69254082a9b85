package org.pixelpost.cli.bench;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.cli.Json;
import org.pixelpost.model.text.T5EncoderModel;
import org.pixelpost.model.text.T5TextEncoder;
import org.pixelpost.nn.Init;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** One PixArt prompt through T5 v1.1 XXL's encoder at its real shapes, with random weights built straight in the chosen dtype. */
@Command(name = "text-encoder", mixinStandardHelpOptions = true,
    description = {"Seconds per 120-token prompt through a T5 v1.1 XXL-shaped encoder (random weights, built in --dtype",
        "without passing through fp32), its resident memory loaded, and after it is unloaded as training unloads it."})
final class TextEncoderBench implements Callable<Integer> {
    @Option(names = "--dtype", defaultValue = "bf16", description = "bf16 or fp32 (fp16 is refused: T5 overflows in it; default: ${DEFAULT-VALUE})") String dtype;
    @Option(names = "--iters", defaultValue = "3", description = "timed prompts after one untimed (default: ${DEFAULT-VALUE})") int iters;
    @Option(names = "--layers", defaultValue = "24", description = "encoder layers (XXL: 24; fewer for a quick look; default: ${DEFAULT-VALUE})") int layers;
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() throws Exception {
        ScalarType dt = T5TextEncoder.dtype(dtype);
        org.pixelpost.io.check.Checks.atLeast("--iters", iters, 1);
        org.pixelpost.io.check.Checks.atLeast("--layers", layers, 1);
        Engine.start();
        T5EncoderModel.Config xxl = T5EncoderModel.Config.v11Xxl();
        T5EncoderModel.Config c = new T5EncoderModel.Config(xxl.vocabSize(), xxl.dModel(), xxl.dKv(), xxl.dFf(), layers, xxl.numHeads(),
            xxl.relativeAttentionNumBuckets(), xxl.relativeAttentionMaxDistance(), xxl.feedForwardProj(), xxl.layerNormEpsilon());
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("encoder", "T5 v1.1 XXL shapes, " + layers + " layers");
        o.put("parameters", c.parameterCount());
        o.put("dtype", dtype);
        o.put("weights_gb", Math.round(T5TextEncoder.weightBytes(c, dt) / 1e7) / 100.0);
        double rssBefore = BenchCommand.currentRssMiB();
        T5EncoderModel m;
        try (Init meta = Init.onMeta()) {
            m = new T5EncoderModel(c);
        }
        m.to(dt);
        try (Generator g = Generator.seeded(0); var ng = Tensors.noGrad()) {
            for (Tensor p : m.parameters().values())
                try (Scope s = Scope.open()) {
                    p.put(g.randn(Tensors.shape(p)).mul(Tensors.s(0.05)).to(dt));
                }
        }
        m.freeze();
        double rssLoaded = BenchCommand.currentRssMiB();
        float[] ids = new float[120], mask = new float[120];
        try (Generator g = Generator.seeded(1)) {
            float[] r = Tensors.toFloats(g.rand(120));
            for (int i = 0; i < 120; i++) {
                ids[i] = i < 24 ? (int) (r[i] * 32000) : 0;
                mask[i] = i < 24 ? 1 : 0;
            }
        }
        double[] t = new double[iters];
        try (Scope s = Scope.open(); var ng = Tensors.noGrad()) {
            Tensor idT = Tensors.fromFloats(ids, 1, 120).to(ScalarType.Long), maskT = Tensors.fromFloats(mask, 1, 120);
            for (int i = 0; i <= iters; i++) {
                long t0 = System.nanoTime();
                try (Scope step = Scope.open()) {
                    Tensor y = m.forward(idT, maskT);
                    if (!torch.isfinite(y).all().item_bool()) o.put("warning", "non-finite features");
                }
                if (i > 0) t[i - 1] = (System.nanoTime() - t0) / 1e9;
            }
        }
        m.close();
        System.gc();
        double rssAfter = BenchCommand.currentRssMiB();
        java.util.Arrays.sort(t);
        o.put("threads", Engine.threads());
        o.put("seconds_per_prompt", Math.round(t[iters / 2] * 100) / 100.0);
        o.put("rss_before_mib", Math.round(rssBefore));
        o.put("rss_loaded_mib", Math.round(rssLoaded));
        o.put("rss_unloaded_mib", Math.round(rssAfter));
        o.put("peak_rss_mib", Math.round(BenchCommand.peakRssMiB()));
        if (json) System.out.println(Json.write(o));
        else o.forEach((k, v) -> System.out.printf("%-20s %s%n", k, v));
        return 0;
    }
}

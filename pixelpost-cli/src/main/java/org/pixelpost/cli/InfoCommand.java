package org.pixelpost.cli;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import org.bytedeco.javacpp.Loader;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "info", mixinStandardHelpOptions = true,
    description = "Start the engine and report it: libtorch, threads, native cache, which autoencoder weights are found.")
final class InfoCommand implements Callable<Integer> {
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() throws Exception {
        long t0 = System.nanoTime();
        Engine.start();
        Map<String, Object> o = new LinkedHashMap<>();
        o.put("engine_start_ms", Math.round((System.nanoTime() - t0) / 1e6));
        o.put("libtorch", "2.10.0 (JavaCPP " + Loader.getVersion() + ", " + Loader.getPlatform() + ")");
        o.put("threads", torch.get_num_threads());
        o.put("native_cache", String.valueOf(Loader.getCacheDir()));
        // one real operation, so a broken native load shows here and not later
        o.put("check", Tensors.item(torch.ones(3).sum()) == 3.0 ? "ok" : "wrong result");
        Map<String, String> weights = new LinkedHashMap<>();
        for (String n : Autoencoders.knownNames()) {
            try {
                weights.put(n, Autoencoders.resolveLocal(n).toString());
            } catch (java.io.IOException e) {
                weights.put(n, "not found locally");
            }
        }
        o.put("autoencoders", weights);
        if (json) System.out.println(Json.write(o));
        else o.forEach((k, v) -> System.out.printf("%-16s %s%n", k, v));
        return 0;
    }
}

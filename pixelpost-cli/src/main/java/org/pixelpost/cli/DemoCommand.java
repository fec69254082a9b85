package org.pixelpost.cli;

import java.nio.file.Path;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.demo.Demo;
import org.pixelpost.demo.Plan;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "demo", mixinStandardHelpOptions = true,
    description = {"The paper's experiments end to end on emoji (MiniLM text encoder): data, an autoencoder, a base model,",
        "SFT and preference post-training with and without the pixel term, metrics, report.html. Regimes: lossy (a 4-channel",
        "f8 AutoencoderKL trained here, 48x compression, as SD's VAE) and taef2 (TAEF2's 32-channel latent, 6x).",
        "Every stage is cached in the output folder: run it again to resume."})
final class DemoCommand implements Callable<Integer> {
    @Option(names = "--quick", description = "a smoke run with tiny budgets (minutes)") boolean quick;
    @Option(names = "--out", description = "output folder (default: demo or demo-quick)") Path out;
    @Option(names = "--tarball", description = "emoji package tarball instead of npm pack") Path tarball;
    @Option(names = "--regime", paramLabel = "lossy|taef2|both",
        description = "the latent spaces to run in (default: lossy, the paper's regime; with --quick: both)") String regime;
    @Option(names = "--report", description = {"only write report.html again from a finished demo's results, folding in the votes",
        "of its human studies (nothing is trained or sampled)"}) boolean reportOnly;

    @Override
    public Integer call() throws Exception {
        Plan plan = quick ? Plan.quick() : Plan.full();
        Path dir = out != null ? out : Path.of(quick ? "demo-quick" : "demo");
        java.util.List<Demo.Regime> regimes = Demo.Regime.parse(regime != null ? regime : quick ? "both" : "lossy");
        for (Demo.Regime r : regimes)
            if (reportOnly && !java.nio.file.Files.isRegularFile(dir.resolve(r.id).resolve("studies/studies.json")))
                throw new org.pixelpost.io.check.InvalidValueException("--report", dir + " holds no finished " + r.id + " regime (no " + r.id
                    + "/studies/studies.json): run pixelpost demo" + (quick ? " --quick" : "") + " --regime " + r.id + " --out " + dir + " first");
        long t0 = System.nanoTime();
        ProgressBar[] bar = {null};
        String[] current = {""};
        Path report = new Demo(plan, dir, tarball, regimes, new Demo.Listener() {
            @Override
            public void stage(String name) {
                current[0] = name;
                bar[0] = null;
                System.err.println("== " + name);
            }

            @Override
            public void step(long step, long total, Map<String, Double> terms) {
                if (bar[0] == null) bar[0] = new ProgressBar(current[0]); // timing starts at the first step
                Double loss = terms.get("loss");
                bar[0].update(step, total, loss == null ? null : String.format("loss %.4g", loss));
            }

            @Override
            public void message(String text) {
                bar[0] = null;
                System.err.println(text);
            }
        }).run();
        System.out.printf("demo (%s) done in %s; report: %s%n", plan.name(), ProgressBar.clock((System.nanoTime() - t0) / 1e9), report);
        return 0;
    }
}

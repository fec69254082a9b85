package org.pixelpost.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.FlatOptions;
import org.pixelpost.train.DataParallel;
import org.pixelpost.train.GradSync;
import org.pixelpost.train.TrainConfig;
import org.pixelpost.train.TrainRun;
import org.pixelpost.train.Trainer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Model.OptionSpec;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
    description = {"Post-train a model: SFT (Eq. 3), DPO (Eq. 4) or SimPO (Eqs. 5-7), with or without the pixel term.",
        "Every field of the JSON config is also a flag; flags override the file. The run folder gets config.json,",
        "metrics.jsonl, tensorboard/, checkpoints/step-N/, samples/ and the final model/ (lora.safetensors in a LoRA run)."})
public final class TrainCommand implements Callable<Integer> {
    @Option(names = "--config", paramLabel = "FILE.json", description = "training config (snake_case keys)", order = -1)
    Path config;

    @Option(names = "--nproc-per-node", paramLabel = "N", defaultValue = "1", order = -1,
        description = {"data-parallel training in N worker processes on this machine (Gloo over loopback), as torchrun's",
            "standalone mode; --batch-size is per process. Processes started by another launcher with RANK, WORLD_SIZE,",
            "MASTER_ADDR and MASTER_PORT set join their group without this flag (default: ${DEFAULT-VALUE})"})
    int nprocPerNode;

    @Option(names = "--dist-timeout", paramLabel = "SECONDS", defaultValue = "1800", order = -1,
        description = "multi-process runs: how long a rendezvous or collective waits for the other processes (default: ${DEFAULT-VALUE})")
    long distTimeout;

    @CommandLine.Spec CommandSpec spec;

    /** The command with one generated option per config field. */
    static CommandLine create() {
        CommandSpec spec = CommandSpec.forAnnotatedObject(new TrainCommand());
        for (FlatOptions.Field f : FlatOptions.fields(TrainConfig.class)) {
            com.fasterxml.jackson.databind.JsonNode def = f.defaultJson(TrainConfig.JSON);
            String shown = def.isNull() || (def.isArray() && def.isEmpty()) ? null : def.isTextual() ? def.asText() : def.toString();
            Class<?> t = f.type();
            OptionSpec.Builder b = OptionSpec.builder(f.flag())
                .description(f.help() + (shown == null ? "" : " (default: " + shown + ")"))
                .paramLabel(t == boolean.class ? "BOOL" : f.key().toUpperCase());
            if (t == boolean.class) b.type(Boolean.class).arity("0..1").fallbackValue("true");
            else if (t == List.class) b.type(String[].class).arity("1");
            else b.type(String.class);
            spec.addOption(b.build());
        }
        return new CommandLine(spec);
    }

    @Override
    public Integer call() throws Exception {
        ObjectNode over = TrainConfig.JSON.createObjectNode();
        java.util.Set<String> fromFlags = new java.util.HashSet<>();
        if (config != null) {
            if (!Files.isRegularFile(config)) throw new IOException(config + ": no such config file");
            JsonNode j;
            try {
                j = TrainConfig.JSON.readTree(config.toFile());
            } catch (IOException e) {
                throw new IOException(config + ": malformed JSON (" + e.getMessage() + ")");
            }
            if (!j.isObject()) throw new IOException(config + ": not a JSON object");
            over.setAll((ObjectNode) j);
        }
        for (FlatOptions.Field f : FlatOptions.fields(TrainConfig.class)) {
            OptionSpec o = spec.findOption(f.flag());
            if (o.originalStringValues().isEmpty()) continue;
            String key = f.key();
            fromFlags.add(key);
            Object v = o.getValue();
            Class<?> t = f.type();
            if (t == List.class) {
                ArrayNode a = over.putArray(key);
                for (String s : (String[]) v) a.add(s);
            } else if (t == boolean.class) over.put(key, (Boolean) v);
            else if (t == int.class || t == long.class) over.put(key, parseLong(o, (String) v));
            else if (t == double.class) over.put(key, parseDouble(o, (String) v));
            else over.put(key, (String) v);
        }
        TrainConfig c;
        try {
            c = TrainConfig.from(over);
        } catch (InvalidValueException e) {
            // name where the value came from: the flag, or the key in the config file
            String where = fromFlags.contains(e.key()) ? "--" + e.key().replace('_', '-')
                : config != null && over.has(e.key()) ? "\"" + e.key() + "\" in " + config : "--" + e.key().replace('_', '-');
            throw new InvalidValueException(where, e.getMessage().substring(e.key().length() + 2));
        }
        if (nprocPerNode < 1) throw new InvalidValueException("--nproc-per-node", nprocPerNode + " is not a positive number of processes");
        if (distTimeout < 1) throw new InvalidValueException("--dist-timeout", distTimeout + " is not a positive number of seconds");
        DataParallel.Env env = DataParallel.Env.from(System.getenv());
        if (nprocPerNode > 1) {
            if (env != null) throw new InvalidValueException("--nproc-per-node", "this process is already rank " + env.rank() + " of " + env.worldSize()
                + " (WORLD_SIZE is set): a worker does not launch workers");
            return Launcher.run(nprocPerNode, workerArgs(spec.commandLine().getParseResult().originalArgs()), distTimeout + 30);
        }
        if (env == null || env.worldSize() == 1) return train(c, GradSync.LOCAL);
        Launcher.watchLauncher();
        try (DataParallel group = DataParallel.join(env, java.time.Duration.ofSeconds(distTimeout), DataParallel.DEFAULT_BUCKET_BYTES,
                c.run().device().startsWith("cuda"))) {
            try {
                return train(c, group);
            } catch (RuntimeException | IOException e) {
                group.reportFailure(e); // so the other processes can name this rank
                throw e;
            }
        }
    }

    /** The command line each worker runs: this one ({@code train ...}) without {@code --nproc-per-node}. */
    public static List<String> workerArgs(List<String> original) {
        List<String> out = new java.util.ArrayList<>();
        for (int i = 0; i < original.size(); i++) {
            String a = original.get(i);
            if (a.equals("--nproc-per-node")) i++;
            else if (!a.startsWith("--nproc-per-node=")) out.add(a);
        }
        return out;
    }

    private Integer train(TrainConfig c, GradSync group) throws IOException {
        boolean quiet = group.rank() != 0; // rank 0 shows progress; the others only what goes wrong
        String tag = quiet ? "[rank " + group.rank() + "] " : "";
        ProgressBar[] bar = {null};
        StopOnSignals signals = new StopOnSignals();
        TrainRun.Summary s;
        try (signals) {
            s = new TrainRun(c, new TrainRun.Listener() {
            @Override
            public void started(Trainer trainer) {
                signals.install(trainer); // SIGTERM / Ctrl-C: finish the step, checkpoint, exit
            }

            @Override
            public void step(long step, long total, Map<String, Double> terms) {
                if (quiet) return;
                if (bar[0] == null) bar[0] = new ProgressBar("training"); // timing starts at the first step
                StringBuilder b = new StringBuilder();
                for (String k : List.of("loss", "latent", "pixel", "accuracy", "margin"))
                    if (terms.containsKey(k)) b.append(String.format("%s %.4g  ", k, terms.get(k)));
                bar[0].update(step, total, b.toString().strip());
            }

            @Override
            public void message(String text) {
                if (quiet && !text.startsWith("warning") && !text.contains("non-finite")) return;
                bar[0] = null;
                System.err.println(tag + text);
            }
        }, group).run();
        } catch (Trainer.Stopped e) {
            String how = e.checkpoint != null ? "checkpoint " + e.checkpoint + "; continue with: pixelpost train --config "
                + Path.of(c.run().out()).resolve("config.json") + " --resume latest" : "no step was finished, nothing to resume";
            throw new Errors.Interrupted("stopped by " + e.reason + " after step " + e.step + "; " + how, e.reason.equals("SIGINT") ? 130 : 143);
        }
        if (!quiet) System.out.printf("trained %d steps in %s%s; model: %s%n", s.steps(), ProgressBar.clock(s.seconds()),
            group.worldSize() > 1 ? " on " + group.worldSize() + " processes" : "", s.model());
        return 0;
    }

    private static long parseLong(OptionSpec o, String v) {
        try {
            return Long.parseLong(v);
        } catch (NumberFormatException e) {
            throw new CommandLine.ParameterException(new CommandLine(o.command()), o.longestName() + ": '" + v + "' is not an integer");
        }
    }

    private static double parseDouble(OptionSpec o, String v) {
        try {
            return Double.parseDouble(v);
        } catch (NumberFormatException e) {
            throw new CommandLine.ParameterException(new CommandLine(o.command()), o.longestName() + ": '" + v + "' is not a number");
        }
    }
}

package org.pixelpost.cli;

import org.pixelpost.cli.bench.BenchCommand;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code pixelpost} command line: thin commands that parse options and call the library. */
@Command(name = "pixelpost", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
    description = "Pixel-space post-training of latent diffusion models.",
    subcommands = {DemoCommand.class, DataCommand.class, EvalCommand.class, InfoCommand.class, AutoencodeCommand.class, AutoencoderCommand.class, SampleCommand.class, ModelCommand.class, LoraCommand.class, BenchCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @CommandLine.Spec CommandLine.Model.CommandSpec spec;

    public static void main(String[] args) {
        System.exit(run(args));
    }

    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.addSubcommand("train", TrainCommand.create());
        cl.setExecutionExceptionHandler((e, cmd, parse) -> {
            // Expected failures (bad values, bad files, missing weights) get one clear line, not a stack trace.
            cmd.getErr().println("error: " + Errors.describe(e));
            if (System.getenv("PIXELPOST_DEBUG") != null) e.printStackTrace(cmd.getErr());
            return Errors.exitCode(e);
        });
        return cl.execute(args);
    }

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"pixelpost " + (v == null ? "dev" : v)};
        }
    }
}

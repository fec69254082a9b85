package org.pixelpost.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.pixelpost.data.EmojiDataset;
import org.pixelpost.tensor.Engine;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.run.OutputDir;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "data", mixinStandardHelpOptions = true, description = "Build data sets.", subcommands = DataCommand.Emoji.class)
final class DataCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    @Command(name = "emoji", mixinStandardHelpOptions = true,
        description = {"A captioned image set from the npm package " + EmojiDataset.PACKAGE + " (64x64 PNGs, captions from emoji.json,",
            "skin-tone variants included): images/, train/, val/, sft/ (curated), eval/ (prompts + references), manifest.json."})
    static final class Emoji implements Callable<Integer> {
        @Option(names = "--out", required = true) Path out;
        @Option(names = "--tarball", description = "use this package tarball instead of running npm pack") Path tarball;
        @Option(names = "--limit", defaultValue = "0", description = "keep only this many training images (0: all)") int limit;

        @Override
        public Integer call() throws Exception {
            Checks.atLeast("--limit", limit, 0);
            OutputDir.prepare(out, "--out", OutputDir.Existing.MAY_HOLD_FILES, false);
            Engine.start();
            Path tgz = tarball != null ? tarball : EmojiDataset.npmPack(out.resolve("download"));
            EmojiDataset.Summary s = EmojiDataset.build(tgz, out, limit);
            System.out.printf("%d images: %d train, %d validation, %d curated SFT, %d evaluation prompts -> %s%n",
                s.images(), s.train(), s.val(), s.sft(), s.eval(), out);
            return 0;
        }
    }
}

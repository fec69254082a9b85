package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

class AutoencodeCommandTest {
    /** Runs the CLI in-process, returning exit code, stdout and stderr. */
    static String[] run(String... args) {
        PrintStream out = System.out, err = System.err;
        ByteArrayOutputStream o = new ByteArrayOutputStream(), e = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(o, true));
            System.setErr(new PrintStream(e, true));
            int code = Main.run(args);
            return new String[] {Integer.toString(code), o.toString(), e.toString()};
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
    }

    @Test
    void reportsEachImageAndNamesTheBadOne(@TempDir Path dir) throws Exception {
        List<Path> images = TestData.emojiPngs(Files.createDirectories(dir.resolve("in")));
        Path bad = dir.resolve("in/broken.png");
        Files.writeString(bad, "not a png");
        List<String> args = new ArrayList<>(List.of("autoencode", "--autoencoder", TestData.taef2().toString(),
            "--out", dir.resolve("out").toString(), "--json"));
        images.subList(0, 3).forEach(p -> args.add(p.toString()));
        args.add(bad.toString());
        args.add(images.get(3).toString());
        String[] r = run(args.toArray(new String[0]));
        assertEquals("1", r[0], "a bad image makes the exit code non-zero");
        assertTrue(r[2].contains(bad.toString()), r[2]);
        JsonNode j = Json.MAPPER.readTree(r[1]);
        assertEquals(4, j.get("images").size(), "the other images still go through");
        double sum = 0;
        for (JsonNode i : j.get("images")) {
            double psnr = i.get("psnr").asDouble();
            assertTrue(psnr > 24 && psnr < 32, i.toString());
            sum += psnr;
        }
        assertEquals(sum / 4, j.get("mean_psnr").asDouble(), 0.01);
        assertEquals(bad.toString(), j.get("errors").get(0).get("file").asText());
        // reconstructions and the grid really decode as PNGs
        assertEquals(64, ImageIO.read(dir.resolve("out/1f308.recon.png").toFile()).getWidth());
        assertNotNull(ImageIO.read(dir.resolve("out/grid.png").toFile()));
    }

    @Test
    void everyCommandHasHelp() {
        for (String[] c : new String[][] {{"--help"}, {"autoencode", "--help"}, {"bench", "autoencoder", "--help"}, {"info", "--help"}}) {
            String[] r = run(c);
            assertEquals("0", r[0]);
            assertTrue(r[1].startsWith("Usage: pixelpost"), r[1]);
        }
    }
}

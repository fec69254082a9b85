package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Arrays;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SampleCommandTest {
    @Test
    void sameSeedSameImagesAndSettingsBeside(@TempDir Path dir) throws Exception {
        String[] made = AutoencodeCommandTest.run("model", "create", "--size", "tiny", "--out", dir.resolve("m").toString());
        assertEquals("0", made[0], made[2]);
        Path prompts = dir.resolve("prompts.txt");
        Files.writeString(prompts, "grinning face\n\n# a comment\nred heart\n");
        String[] a = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompts", prompts.toString(),
            "--steps", "5", "--guidance", "3", "--seed", "7", "--num-images", "2", "--out", dir.resolve("a").toString(), "--json");
        assertEquals("0", a[0], a[2]);
        String[] b = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompts", prompts.toString(),
            "--steps", "5", "--guidance", "3", "--seed", "7", "--num-images", "2", "--batch", "3", "--out", dir.resolve("b").toString());
        assertEquals("0", b[0], b[2]);
        String[] c = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompts", prompts.toString(),
            "--steps", "5", "--guidance", "3", "--seed", "8", "--num-images", "2", "--out", dir.resolve("c").toString());
        assertEquals("0", c[0], c[2]);
        // the batch as two groups sampled at once on their own threads: the same images
        String[] d = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompts", prompts.toString(),
            "--steps", "5", "--guidance", "3", "--seed", "7", "--num-images", "2", "--concurrent-batches", "2", "--out", dir.resolve("d").toString());
        assertEquals("0", d[0], d[2]);
        for (String f : new String[] {"000-0.png", "000-1.png", "001-0.png", "001-1.png"}) {
            assertEquals(64, ImageIO.read(dir.resolve("a").resolve(f).toFile()).getWidth());
            assertArrayEquals(Files.readAllBytes(dir.resolve("a").resolve(f)), Files.readAllBytes(dir.resolve("b").resolve(f)), f);
            assertArrayEquals(Files.readAllBytes(dir.resolve("a").resolve(f)), Files.readAllBytes(dir.resolve("d").resolve(f)), f + ", groups at once");
            assertFalse(Arrays.equals(Files.readAllBytes(dir.resolve("a").resolve(f)), Files.readAllBytes(dir.resolve("c").resolve(f))), f);
        }
        JsonNode s = Json.MAPPER.readTree(dir.resolve("a/settings.json").toFile());
        assertEquals(5, s.get("steps").asInt());
        assertEquals(2, s.get("prompts").size());
        assertEquals("DDIMScheduler", s.get("scheduler").get("_class_name").asText());
        assertEquals(8, s.get("images").get(1).get("seed").asInt());
        assertNotNull(ImageIO.read(dir.resolve("a/grid.png").toFile()));
        assertEquals(s, Json.MAPPER.readTree(a[1]));
    }

    @Test
    void samplersByNameWithTheirOptionsRecorded(@TempDir Path dir) throws Exception {
        String[] made = AutoencodeCommandTest.run("model", "create", "--size", "tiny", "--out", dir.resolve("m").toString());
        assertEquals("0", made[0], made[2]);
        // a stochastic sampler: each image's noise comes from its own seed, so the batch does not change it
        String[] a = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompt", "red heart", "--prompt", "dog face",
            "--steps", "4", "--sampler", "euler_a", "--seed", "3", "--out", dir.resolve("a").toString());
        assertEquals("0", a[0], a[2]);
        String[] b = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompt", "red heart", "--prompt", "dog face",
            "--steps", "4", "--sampler", "euler_a", "--seed", "3", "--batch", "1", "--out", dir.resolve("b").toString());
        assertEquals("0", b[0], b[2]);
        for (String f : new String[] {"000-0.png", "001-0.png"})
            assertArrayEquals(Files.readAllBytes(dir.resolve("a").resolve(f)), Files.readAllBytes(dir.resolve("b").resolve(f)), f);
        String[] c = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompt", "red heart", "--steps", "4",
            "--sampler", "dpmpp_2m", "--sampler-option", "use_karras_sigmas=true", "--sampler-option", "solver_order=3", "--out", dir.resolve("c").toString());
        assertEquals("0", c[0], c[2]);
        JsonNode sch = Json.MAPPER.readTree(dir.resolve("c/settings.json").toFile()).get("scheduler");
        assertEquals("dpmpp_2m", sch.get("sampler").asText());
        assertEquals("true", sch.get("sampler_options").get("use_karras_sigmas").asText());
        assertEquals("3", sch.get("sampler_options").get("solver_order").asText());
        // bad samplers and options are refused by name before any model loads
        String[][] bad = {{"--sampler", "plms9", "dpmpp_2m"}, {"--sampler-option", "use_karras_sigmas=yes", "use_karras_sigmas"},
            {"--eta", "0.5", "--eta"}};
        for (String[] x : bad) {
            List<String> args = new java.util.ArrayList<>(List.of("sample", "--model", dir.resolve("absent").toString(), "--prompt", "x", x[0], x[1],
                "--out", dir.resolve("o-" + x[2]).toString()));
            if (!x[0].equals("--sampler")) args.addAll(List.of("--sampler", "euler"));
            String[] r = AutoencodeCommandTest.run(args.toArray(new String[0]));
            assertNotEquals("0", r[0]);
            assertTrue(r[2].contains(x[2]) && !r[2].contains("absent"), r[2]);
            assertFalse(Files.exists(dir.resolve("o-" + x[2])));
        }
        String[] low = AutoencodeCommandTest.run("sample", "--model", dir.resolve("m").toString(), "--prompt", "x", "--steps", "2", "--sampler", "dpmpp_2m",
            "--sampler-option", "solver_order=3", "--out", dir.resolve("low").toString());
        assertNotEquals("0", low[0]);
        assertTrue(low[2].contains("--steps") && low[2].contains("solver order 3"), low[2]);
    }

    @Test
    void missingModelIsAClearError(@TempDir Path dir) {
        String[] r = AutoencodeCommandTest.run("sample", "--model", dir.resolve("nothing").toString(), "--prompt", "x", "--out", dir.resolve("o").toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("not a model folder"), r[2]);
        assertFalse(Files.exists(dir.resolve("o")));
    }
}

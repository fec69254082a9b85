package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.io.tensorfile.SafeTensors;

/** LoRA from the command line: train adapters (SFT and DPO), export, sample with --lora, merge, and the inputs users get wrong. */
class LoraCommandTest {
    static String[] run(String... args) {
        return AutoencodeCommandTest.run(args);
    }

    static int maxPixelDifference(Path a, Path b) throws Exception {
        BufferedImage x = ImageIO.read(a.toFile()), y = ImageIO.read(b.toFile());
        int max = 0;
        for (int i = 0; i < x.getWidth(); i++)
            for (int j = 0; j < x.getHeight(); j++)
                for (int s = 0; s < 24; s += 8) max = Math.max(max, Math.abs((x.getRGB(i, j) >> s & 255) - (y.getRGB(i, j) >> s & 255)));
        return max;
    }

    @Test
    void trainExportSampleAndMerge(@TempDir Path dir) throws Exception {
        Path model = dir.resolve("model"), run = dir.resolve("run");
        try (TextToImageModel m = InMemory.tinyStableDiffusion()) {
            m.save(model);
        }
        Path data = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 2), TestData.CAPTIONS.subList(0, 2));
        String[] r = run("train", "--init", model.toString(), "--data", data.toString(), "--out", run.toString(), "--steps", "3",
            "--batch-size", "2", "--lora-rank", "4", "--lora-alpha", "8", "--lora-targets", "attention,ff", "--lr", "1e-2", "--pixel-weight", "1");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[2].contains("LoRA rank 4, alpha 8.0 on"), r[2]);
        Path file = run.resolve("lora.safetensors");
        assertFalse(Files.exists(run.resolve("model")), "a LoRA run writes the adapters, not a model");
        try (SafeTensors st = SafeTensors.open(file)) {
            assertTrue(st.entries().containsKey("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"), st.entries().keySet().toString());
            assertTrue(st.entries().containsKey("lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_ff_net_2.lora_up.weight"));
            assertEquals("4", st.metadata().get("ss_network_dim"));
            assertEquals("8", st.metadata().get("ss_network_alpha"));
        }

        Path peft = dir.resolve("peft.safetensors");
        r = run("lora", "export", "--lora", run.toString(), "--model", model.toString(), "--format", "peft", "--out", peft.toString());
        assertEquals("0", r[0], r[2]);
        try (SafeTensors st = SafeTensors.open(peft)) {
            assertTrue(st.entries().containsKey("unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight"), st.entries().keySet().toString());
        }
        r = run("lora", "info", "--lora", peft.toString(), "--model", model.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals("[4]", Json.MAPPER.readTree(r[1]).get("ranks").toString());
        assertEquals("[4.0]", Json.MAPPER.readTree(r[1]).get("alphas").toString(), "PEFT: alpha folded, read as alpha = rank");

        // sampling with the LoRA at 0.7 equals sampling the model it merges into at 0.7, from either layout
        List<String> sample = List.of("sample", "--prompt", "grinning face", "--steps", "4", "--guidance", "2");
        Path base = dir.resolve("base"), withLora = dir.resolve("with-lora"), merged = dir.resolve("merged"), fromMerged = dir.resolve("from-merged");
        assertEquals("0", run(args(sample, "--model", model.toString(), "--out", base.toString()))[0]);
        r = run(args(sample, "--model", model.toString(), "--lora", file + ":0.7", "--out", withLora.toString()));
        assertEquals("0", r[0], r[2]);
        assertTrue(Json.MAPPER.readTree(Files.readString(withLora.resolve("settings.json"))).get("model").asText().contains("LoRA"));
        r = run("lora", "merge", "--model", model.toString(), "--lora", peft + ":0.7", "--out", merged.toString());
        assertEquals("0", r[0], r[2]);
        assertEquals("0", run(args(sample, "--model", merged.toString(), "--out", fromMerged.toString()))[0]);
        assertTrue(maxPixelDifference(withLora.resolve("000-0.png"), fromMerged.resolve("000-0.png")) <= 1, "merged == applied at load");
        int changed = maxPixelDifference(base.resolve("000-0.png"), withLora.resolve("000-0.png"));
        assertTrue(changed > 2, "the LoRA changes the image: " + changed);

        // inputs users get wrong: a clear line, the exit code, nothing written
        r = run(args(sample, "--model", model.toString(), "--lora", file + ":strong", "--out", dir.resolve("s1").toString()));
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("'strong'") && r[2].contains("--lora"), r[2]);
        assertFalse(Files.exists(dir.resolve("s1")));
        r = run(args(sample, "--model", model.toString(), "--lora", dir.resolve("nope.safetensors").toString(), "--out", dir.resolve("s2").toString()));
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("nope.safetensors") && r[2].contains("no such LoRA file"), r[2]);
        assertFalse(Files.exists(dir.resolve("s2")), "the output folder it made is gone");
        Path sdxl = dir.resolve("sdxl.safetensors");
        try (var s = org.pixelpost.tensor.Scope.open(); var g = org.pixelpost.tensor.Generator.seeded(1)) {
            SafeTensors.write(sdxl, Map.of("lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", g.randn(4, 1280),
                "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", g.randn(1280, 4)));
        }
        r = run("lora", "merge", "--model", model.toString(), "--lora", file.toString(), "--lora", sdxl.toString(), "--out", dir.resolve("m2").toString());
        assertEquals("1", r[0]);
        assertTrue(r[2].contains("sdxl.safetensors") && r[2].contains("SDXL"), r[2]);
        assertFalse(Files.exists(dir.resolve("m2")), "no LoRA was merged and no folder written");
        r = run("train", "--init", model.toString(), "--data", data.toString(), "--out", dir.resolve("run2").toString(), "--lora-alpha", "4");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("--lora-rank"), r[2]);
        r = run("train", "--init", model.toString(), "--data", data.toString(), "--out", dir.resolve("run3").toString(), "--lora-rank", "4",
            "--lora-targets", "no_such_layer");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("no_such_layer") && r[2].contains("select no"), r[2]);
        assertFalse(Files.exists(dir.resolve("run3")));
    }

    @Test
    void loraDpoRunUsesTheModelWithAdaptersOffAsItsReference(@TempDir Path dir) throws Exception {
        Path model = dir.resolve("model"), run = dir.resolve("run");
        try (TextToImageModel m = InMemory.tinyStableDiffusion()) {
            m.save(model);
        }
        List<Path> files = TestData.emojiPngs(Files.createDirectories(dir.resolve("pairs")), TestData.EMOJI.subList(0, 4));
        StringBuilder jsonl = new StringBuilder();
        for (int i = 0; i < 4; i += 2)
            jsonl.append("{\"prompt\": \"p").append(i).append("\", \"winner\": \"").append(files.get(i).getFileName())
                .append("\", \"loser\": \"").append(files.get(i + 1).getFileName()).append("\"}\n");
        Files.writeString(dir.resolve("pairs/pairs.jsonl"), jsonl);
        String[] r = run("train", "--objective", "dpo", "--init", model.toString(), "--data", dir.resolve("pairs").toString(), "--out", run.toString(),
            "--steps", "2", "--batch-size", "2", "--lora-rank", "2", "--pixel-weight", "1", "--lr", "1e-3", "--log-every", "1");
        assertEquals("0", r[0], r[2]);
        List<String> lines = Files.readAllLines(run.resolve("metrics.jsonl"));
        // at the first step the adapters are zero: the model is its reference, so the loss is (1 + mu) ln 2
        assertEquals(2 * Math.log(2), Json.MAPPER.readTree(lines.get(0)).get("loss").asDouble(), 1e-5);
        assertTrue(Files.isRegularFile(run.resolve("lora.safetensors")));
        // the same run with the base loaded a second time as its reference gives the same losses, step 2 included
        Path withCopy = dir.resolve("run-copy");
        r = run("train", "--objective", "dpo", "--init", model.toString(), "--data", dir.resolve("pairs").toString(), "--out", withCopy.toString(),
            "--steps", "2", "--batch-size", "2", "--lora-rank", "2", "--pixel-weight", "1", "--lr", "1e-3", "--log-every", "1", "--reference", model.toString());
        assertEquals("0", r[0], r[2]);
        List<String> copyLines = Files.readAllLines(withCopy.resolve("metrics.jsonl"));
        double a = Json.MAPPER.readTree(lines.get(1)).get("loss").asDouble(), b = Json.MAPPER.readTree(copyLines.get(1)).get("loss").asDouble();
        assertNotEquals(2 * Math.log(2), a, 1e-6, "step 2: the adapters have moved");
        assertEquals(b, a, 1e-6 * Math.abs(b), "adapters off == a second copy of the base as the reference");
        // a resume must not change the adapters' settings (the checkpoints hold only the adapters)
        r = run("train", "--config", run.resolve("config.json").toString(), "--resume", "latest", "--lora-alpha", "7");
        assertEquals("2", r[0], r[2]);
        assertTrue(r[2].contains("lora") && r[2].contains("alpha") && r[2].contains("config.json"), r[2]);
    }

    static String[] args(List<String> head, String... more) {
        List<String> all = new java.util.ArrayList<>(head);
        all.addAll(List.of(more));
        return all.toArray(new String[0]);
    }
}

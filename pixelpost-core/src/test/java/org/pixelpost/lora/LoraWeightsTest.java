package org.pixelpost.lora;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.data.Batches;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.nn.Lora;
import org.pixelpost.nn.Module;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.Trainer;

/**
 * LoRA files: a LoRA trained on the U-Net parity model (and adapters on its CLIP) written in the
 * kohya and PEFT layouts with the key names the reference loaders look for, read back exactly,
 * merged equal to unmerged, and bad files refused whole.
 */
class LoraWeightsTest {
    static final Path UNET = TestData.shared().resolve("oracle/unet_tiny");
    static TextToImageModel trained;
    static LoraWeights lora;
    static Scope scope;

    /** Layer paths of the fixture's U-Net from the reference library's own weight file: the layers of Transformer2D blocks. */
    static Set<String> referenceLayers(String... endings) throws Exception {
        try (SafeTensors st = SafeTensors.open(UNET.resolve("diffusion_pytorch_model.safetensors"))) {
            return st.entries().keySet().stream().filter(k -> k.endsWith(".weight")).map(k -> k.substring(0, k.length() - ".weight".length()))
                .filter(p -> List.of(endings).stream().anyMatch(e -> ("." + p).endsWith(e))).collect(Collectors.toCollection(TreeSet::new));
        }
    }

    @BeforeAll
    static void trainALora() throws Exception {
        scope = Scope.open();
        trained = InMemory.tinyStableDiffusion();
        try (Generator g = Generator.seeded(11)) {
            Lora.attach(trained.denoiser.module(), LoraTargets.of(List.of("attention", "proj")), 4, 8, 0, g);
            // text-encoder adapters: the trainer does not train them; they get values of their own
            Module clip = ((ClipTextEncoder) trained.textEncoder).model();
            Lora.attach(clip, LoraTargets.of(List.of("attention")), 2, 1, 0, g);
            try (var ng = Tensors.noGrad()) {
                for (Lora.Adapter a : Lora.adapters(clip).values()) a.up().copy_(g.randn(Tensors.shape(a.up())).mul(Tensors.s(0.1)));
            }
            Batch batch;
            try (var ng = Tensors.noGrad()) {
                var text = trained.textEncoder.encode(List.of("a red circle", "a blue square"));
                batch = Batch.of(trained.encodeImages(g.rand(2, 3, 16, 16)), text.tokens(), text.mask());
            }
            Batches data = new Batches() {
                @Override public Batch get(long step, int micro) { return batch; }
                @Override public long size() { return 2; }
            };
            try (Trainer t = new Trainer(trained, data, new Sft(1, PixelTerm.of(0)), Trainer.Options.defaults().withSteps(20).withLr(1e-2))) {
                double before = t.evaluate(List.of(batch), 5).get("loss");
                t.run();
                double after = t.evaluate(List.of(batch), 5).get("loss");
                assertTrue(after < 0.9 * before, "the adapters learn: held-fixed loss " + before + " -> " + after);
            }
        }
        lora = LoraWeights.of(trained);
    }

    @AfterAll
    static void close() {
        trained.close();
        scope.close();
    }

    @Test
    void kohyaFileCarriesTheDiffusersBlockNamesAlphaAndMetadata(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("kohya.safetensors");
        lora.withMetadata(Map.of("ss_base_model_version", "sd_v1")).write(f, LoraLayout.written("kohya"));
        Set<String> expected = new TreeSet<>();
        for (String p : referenceLayers(".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out"))
            for (String s : List.of(".lora_down.weight", ".lora_up.weight", ".alpha")) expected.add("lora_unet_" + p.replace('.', '_') + s);
        Set<String> te = new TreeSet<>();
        for (int layer = 0; layer < 2; layer++)
            for (String p : List.of("q_proj", "k_proj", "v_proj", "out_proj"))
                for (String s : List.of(".lora_down.weight", ".lora_up.weight", ".alpha"))
                    te.add("lora_te_text_model_encoder_layers_" + layer + "_self_attn_" + p + s);
        expected.addAll(te);
        try (SafeTensors st = SafeTensors.open(f)) {
            assertEquals(expected, st.entries().keySet());
            assertTrue(st.entries().containsKey("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight"));
            // 1x1 convolutions keep 4-D weights
            assertArrayEquals(new long[] {4, 32, 1, 1}, st.entries().get("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight").shape());
            assertArrayEquals(new long[] {32, 4, 1, 1}, st.entries().get("lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight").shape());
            assertArrayEquals(new long[] {4, 32}, st.entries().get("lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight").shape());
            assertEquals(0, st.entries().get("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha").shape().length, "alpha is a 0-d tensor");
            assertEquals(8.0, Tensors.item(st.load("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.alpha")));
            assertEquals(1.0, Tensors.item(st.load("lora_te_text_model_encoder_layers_1_self_attn_out_proj.alpha")));
            assertEquals("networks.lora", st.metadata().get("ss_network_module"));
            assertEquals("dynamic", st.metadata().get("ss_network_dim"), "ranks 4 (U-Net) and 2 (text encoder)");
            assertEquals("sd_v1", st.metadata().get("ss_base_model_version"));
            Tensor up = st.load("lora_unet_up_blocks_1_attentions_1_transformer_blocks_0_attn2_to_out_0.lora_up.weight");
            assertTrue(Tensors.item(up.abs().max()) > 0, "B was trained away from zero");
        }
    }

    @Test
    void peftFileFoldsAlphaIntoBAndRoundTripsExactly(@TempDir Path dir) throws Exception {
        Path kohya = dir.resolve("kohya.safetensors"), peft = dir.resolve("peft.safetensors"), again = dir.resolve("again.safetensors");
        lora.write(kohya, LoraLayout.written("kohya"));
        LoraWeights fromKohya = LoraWeights.read(kohya, trained);
        fromKohya.write(peft, LoraLayout.written("peft"));
        try (SafeTensors st = SafeTensors.open(peft)) {
            Set<String> expected = new TreeSet<>();
            for (String p : referenceLayers(".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out"))
                for (String s : List.of(".lora_A.weight", ".lora_B.weight")) expected.add("unet." + p + s);
            for (int layer = 0; layer < 2; layer++)
                for (String p : List.of("q_proj", "k_proj", "v_proj", "out_proj"))
                    for (String s : List.of(".lora_A.weight", ".lora_B.weight")) expected.add("text_encoder.text_model.encoder.layers." + layer + ".self_attn." + p + s);
            assertEquals(expected, st.entries().keySet(), "no alpha keys: diffusers reads the layout as alpha = rank");
            String k = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";
            Tensor b = st.load(k + ".lora_B.weight");
            Tensor up = lora.updates().get(k).up();
            assertEquals(0, Tensors.item(b.sub(up.mul(Tensors.s(2))).abs().max()), "alpha / rank = 8 / 4 folded into lora_B");
        }
        LoraWeights fromPeft = LoraWeights.read(peft, trained);
        assertEquals("peft", fromPeft.layout());
        assertEquals(lora.updates().keySet(), fromPeft.updates().keySet());
        for (Map.Entry<String, LoraWeights.Update> e : lora.updates().entrySet()) {
            LoraWeights.Update o = e.getValue(), k = fromKohya.updates().get(e.getKey()), p = fromPeft.updates().get(e.getKey());
            assertTrue(torch.equal(o.down(), k.down()) && torch.equal(o.up(), k.up()) && o.alpha() == k.alpha(), "kohya -> ours exact: " + e.getKey());
            assertTrue(torch.equal(o.down(), p.down()), e.getKey());
            assertEquals(p.rank(), p.alpha(), "PEFT is read as alpha = rank");
            Tensor folded = o.scale() == 1 ? o.up() : o.up().mul(Tensors.s(o.scale()));
            assertTrue(torch.equal(folded, p.up()), "ours -> PEFT -> ours exact: " + e.getKey());
        }
        fromPeft.write(again, LoraLayout.written("peft"));
        assertEquals(-1, Files.mismatch(peft, again), "PEFT -> ours -> PEFT gives the same bytes");
    }

    @Test
    void ldmNamesAndOldDiffusersNamesLoadToTheSameLayers(@TempDir Path dir) throws Exception {
        Path kohya = dir.resolve("kohya.safetensors");
        lora.write(kohya, LoraLayout.written("kohya"));
        Map<String, Tensor> ldm = new LinkedHashMap<>(), old = new LinkedHashMap<>();
        // the original LDM layout of this U-Net (one layer per block): input_blocks.1 is the first level's
        // attention, middle_block.1 the middle one, output_blocks.2 and .3 the second up level's two
        Map<String, String> ldmBlocks = Map.of("down_blocks_0_attentions_0", "input_blocks_1_1", "mid_block_attentions_0", "middle_block_1",
            "up_blocks_1_attentions_0", "output_blocks_2_1", "up_blocks_1_attentions_1", "output_blocks_3_1");
        SafeTensors.read(kohya).forEach((k, v) -> {
            String renamed = k;
            for (Map.Entry<String, String> e : ldmBlocks.entrySet()) renamed = renamed.replace("lora_unet_" + e.getKey() + "_", "lora_unet_" + e.getValue() + "_");
            ldm.put(renamed, v);
        });
        assertTrue(ldm.containsKey("lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q.lora_down.weight"));
        SafeTensors.write(dir.resolve("ldm.safetensors"), ldm);
        LoraWeights fromLdm = LoraWeights.read(dir.resolve("ldm.safetensors"), trained);
        assertEquals("kohya (LDM names)", fromLdm.layout());
        assertEquals("kohya", LoraWeights.read(kohya, trained).layout());
        assertEquals(lora.updates().keySet(), fromLdm.updates().keySet());
        for (String k : lora.updates().keySet()) assertTrue(torch.equal(lora.updates().get(k).up(), fromLdm.updates().get(k).up()), k);

        // diffusers' first LoRA layout: attention processors' to_q_lora / to_out_lora, no alpha (scale 1)
        String block = "down_blocks.0.attentions.0.transformer_blocks.0.attn1";
        for (String[] p : new String[][] {{"to_q", "to_q"}, {"to_out", "to_out.0"}}) {
            LoraWeights.Update u = lora.updates().get("unet." + block + "." + p[1]);
            old.put("unet." + block + ".processor." + p[0] + "_lora.down.weight", u.down());
            old.put("unet." + block + ".processor." + p[0] + "_lora.up.weight", u.up());
        }
        SafeTensors.write(dir.resolve("old.safetensors"), old);
        LoraWeights fromOld = LoraWeights.read(dir.resolve("old.safetensors"), trained);
        assertEquals("diffusers (old)", fromOld.layout());
        assertEquals(Set.of("unet." + block + ".to_q", "unet." + block + ".to_out.0"), fromOld.updates().keySet());
        assertEquals(1.0, fromOld.updates().get("unet." + block + ".to_q").scale());
    }

    /** The U-Net on the oracle's inputs. */
    static Tensor unet(UNet2DCondition u) throws Exception {
        Map<String, Tensor> in = SafeTensors.read(UNET.resolve("inputs.safetensors"));
        try (var g = Tensors.noGrad()) {
            return u.forward(in.get("sample"), in.get("timestep"), org.pixelpost.model.Conditioning.of(in.get("encoder_hidden_states"), null));
        }
    }

    @Test
    void mergingEqualsApplyingUnmergedAtAnyScale(@TempDir Path dir) throws Exception {
        Path f = dir.resolve("lora.safetensors");
        lora.write(f, LoraLayout.written("kohya"));
        for (double scale : new double[] {1.0, 0.6}) {
            try (UNet2DCondition merged = UNet2DCondition.load(UNET); UNet2DCondition unmerged = UNet2DCondition.load(UNET)) {
                Tensor base = unet(merged);
                Map<String, Module> cm = LoraWeights.components(merged), cu = LoraWeights.components(unmerged);
                LoraWeights onUnet = LoraWeights.read(dir.resolve(unetOnly(f, dir)), cm);
                assertTrue(onUnet.updates().keySet().stream().anyMatch(k -> k.endsWith(".proj_in")));
                onUnet.merge(cm, scale);
                onUnet.attach(cu, scale);
                Tensor a = unet(merged), b = unet(unmerged);
                assertTrue(Tensors.item(a.sub(base).abs().max()) > 1e-3, "the LoRA changes the output");
                assertTrue(Tensors.item(a.sub(b).abs().max()) < 1e-5, "merged equals unmerged at scale " + scale + ": " + Tensors.item(a.sub(b).abs().max()));
            }
        }
    }

    /**
     * The U-Net's part of a kohya file, for a model that is only a U-Net, with the 1x1 convolutions'
     * weights written 2-D as some trainers write them ({@code [r, C]}, {@code [C, r]}).
     */
    static String unetOnly(Path f, Path dir) throws Exception {
        Map<String, Tensor> all = SafeTensors.read(f), unet = new LinkedHashMap<>();
        all.forEach((k, v) -> { if (k.startsWith("lora_unet_")) unet.put(k, v.dim() == 4 && k.contains("_proj_") ? v.flatten(1, -1) : v); });
        assertEquals(2, unet.get("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight").dim());
        SafeTensors.write(dir.resolve("unet-only.safetensors"), unet);
        return "unet-only.safetensors";
    }

    @Test
    void textEncoderAdaptersMergeLikeTheyRun() throws Exception {
        ClipTextEncoder clip = (ClipTextEncoder) trained.textEncoder;
        Tensor ids = clip.tokenIds(List.of("a red circle on a blue square"));
        try (TextToImageModel fresh = InMemory.tinyStableDiffusion(); var g = Tensors.noGrad()) {
            ClipTextEncoder copy = (ClipTextEncoder) fresh.textEncoder; // the same base weights (same seed), no adapters
            Tensor adapted = clip.features(ids), base = copy.features(ids);
            assertTrue(Tensors.item(adapted.sub(base).abs().max()) > 1e-4, "the adapters change the features");
            Map<String, LoraWeights.Update> te = new LinkedHashMap<>(lora.updates());
            te.keySet().removeIf(k -> !k.startsWith("text_encoder."));
            new LoraWeights(te, Map.of(), List.of()).merge(LoraWeights.components(fresh), 1);
            assertTrue(Tensors.item(adapted.sub(copy.features(ids)).abs().max()) < 1e-5, "merged into a copy equals the adapters at run time");
        }
    }

    static String refusal(Path f, Map<String, Module> components) {
        BadFileException e = assertThrows(BadFileException.class, () -> LoraWeights.read(f, components));
        assertTrue(e.getMessage().contains(f.toString()), "names the file: " + e.getMessage());
        return e.getMessage();
    }

    @Test
    void filesThatDoNotFitAreRefusedWholeWithTheKeysThatDidNotFit(@TempDir Path dir) throws Exception {
        try (UNet2DCondition u = UNet2DCondition.load(UNET); Generator g = Generator.seeded(4)) {
            Map<String, Module> c = LoraWeights.components(u);
            Map<String, Tensor> before = new LinkedHashMap<>();
            u.parameters().forEach((k, v) -> before.put(k, v.clone()));
            String good = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";

            // SDXL: two text encoders, deeper transformer stacks
            Path sdxl = dir.resolve("sdxl.safetensors");
            SafeTensors.write(sdxl, Map.of("lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", g.randn(4, 768),
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", g.randn(768, 4),
                "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_down.weight", g.randn(4, 640),
                "lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q.lora_up.weight", g.randn(640, 4)));
            String m = refusal(sdxl, c);
            assertTrue(m.contains("SDXL") && m.contains("lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_q"), m);

            // the right names with another model's widths (a rank that does not fit is the same refusal)
            Path wide = dir.resolve("wide.safetensors");
            SafeTensors.write(wide, Map.of(good + ".lora_down.weight", g.randn(4, 320), good + ".lora_up.weight", g.randn(320, 4)));
            m = refusal(wide, c);
            assertTrue(m.contains(good) && m.contains("[4, 320]") && m.contains("[4, 32]") && m.contains("another base model"), m);
            String ldmName = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q";
            Path wideLdm = dir.resolve("wide-ldm.safetensors");
            SafeTensors.write(wideLdm, Map.of(ldmName + ".lora_down.weight", g.randn(4, 320), ldmName + ".lora_up.weight", g.randn(320, 4)));
            m = refusal(wideLdm, c);
            assertTrue(m.contains(ldmName), "the message names the file's own key: " + m);
            Path ranks = dir.resolve("ranks.safetensors");
            SafeTensors.write(ranks, Map.of(good + ".lora_down.weight", g.randn(4, 32), good + ".lora_up.weight", g.randn(32, 8)));
            assertTrue(refusal(ranks, c).contains("disagree on the rank"));

            // keys that match nothing: one good layer is not applied on its own
            Path nothing = dir.resolve("nothing.safetensors");
            SafeTensors.write(nothing, Map.of(good + ".lora_down.weight", g.randn(4, 32), good + ".lora_up.weight", g.randn(32, 4),
                "lora_unet_encoder_layer_7_attn.lora_down.weight", g.randn(4, 32), "lora_unet_encoder_layer_7_attn.lora_up.weight", g.randn(32, 4)));
            m = refusal(nothing, c);
            assertTrue(m.contains("1 of 2") && m.contains("lora_unet_encoder_layer_7_attn"), m);
            assertTrue(m.contains("named like lora_unet_"), m);

            // a whole model, and a LyCORIS file, are not LoRAs
            assertTrue(refusal(UNET.resolve("diffusion_pytorch_model.safetensors"), c).contains("holds no LoRA weights"));
            Path loha = dir.resolve("loha.safetensors");
            SafeTensors.write(loha, Map.of(good + ".hada_w1_a", g.randn(32, 4), good + ".hada_w1_b", g.randn(4, 32)));
            assertTrue(refusal(loha, c).contains("not a plain LoRA"));

            // alpha missing: read as alpha = rank, as the other loaders do, and said so
            Path noAlpha = dir.resolve("no-alpha.safetensors");
            SafeTensors.write(noAlpha, Map.of(good + ".lora_down.weight", g.randn(4, 32), good + ".lora_up.weight", g.randn(32, 4)));
            LoraWeights w = LoraWeights.read(noAlpha, c);
            assertEquals(1.0, w.updates().values().iterator().next().scale());
            assertTrue(w.notes().get(0).contains("no .alpha") && w.notes().get(0).contains(noAlpha.toString()), w.notes().toString());

            // an in-memory LoRA with one layer the model lacks changes nothing when merged
            Map<String, LoraWeights.Update> partial = new LinkedHashMap<>(w.updates());
            partial.put("unet.down_blocks.9.attn.to_q", w.updates().values().iterator().next());
            assertThrows(IllegalArgumentException.class, () -> new LoraWeights(partial, Map.of(), List.of()).merge(c, 1));
            assertThrows(org.pixelpost.io.check.InvalidValueException.class, () -> w.merge(c, Double.NaN));
            u.parameters().forEach((k, v) -> assertTrue(torch.equal(before.get(k), v), "nothing applied halfway: " + k));
        }
    }
}

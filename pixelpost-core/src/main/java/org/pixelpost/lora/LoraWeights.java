package org.pixelpost.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.nn.Lora;
import org.pixelpost.nn.Module;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * A LoRA as low-rank updates by layer, apart from any file layout. Keys are module paths qualified
 * by component: {@code unet.<diffusers path>} (or {@code transformer.<path>} for a DiT) and
 * {@code text_encoder.<transformers path>}. Each update adds {@code (alpha / rank) up down} to the
 * layer's weight.
 *
 * <p>Files: the kohya layout ({@code lora_unet_<path with _>.lora_down.weight}, {@code .lora_up.weight},
 * {@code .alpha}; {@code lora_te_} for the text encoder), which AUTOMATIC1111, ComfyUI and diffusers
 * load, with the diffusers block names or the original LDM names; the diffusers/PEFT layout
 * ({@code unet.<path>.lora_A.weight}, {@code lora_B.weight}), which carries no alpha and is read
 * with alpha = rank, so alpha / rank is folded into B on writing; and the older diffusers names
 * ({@code processor.to_q_lora.down.weight}, {@code lora.down.weight}, {@code lora_linear_layer.down.weight}).
 */
public final class LoraWeights {
    /** One layer's update: {@code down [r, in(, kh, kw)]}, {@code up [out, r(, 1, 1)]}, alpha. */
    public record Update(Tensor down, Tensor up, double alpha) {
        public int rank() {
            return (int) down.size(0);
        }

        public double scale() {
            return alpha / rank();
        }
    }

    public static final String TEXT_ENCODER = "text_encoder";

    private final Map<String, Update> updates;
    /** Qualified key -> the qualified layers the file holds it as, where the model publishes it under other names (see {@link Denoiser#publishedLayers}). */
    private final Map<String, List<Denoiser.PublishedPart>> published;
    private final Map<String, String> metadata;
    private final List<String> notes;
    private final String layout;

    public LoraWeights(Map<String, Update> updates, Map<String, String> metadata, List<String> notes) {
        this(updates, Map.of(), metadata, notes, "in memory");
    }

    private LoraWeights(Map<String, Update> updates, Map<String, List<Denoiser.PublishedPart>> published, Map<String, String> metadata,
                        List<String> notes, String layout) {
        this.updates = new TreeMap<>(updates);
        this.published = Map.copyOf(published);
        this.metadata = Map.copyOf(metadata);
        this.notes = List.copyOf(notes);
        this.layout = layout;
    }

    /** The layout it was read in: kohya (diffusers or LDM names), peft, diffusers (old), or in memory. */
    public String layout() { return layout; }

    /** Updates by qualified layer path, sorted. */
    public Map<String, Update> updates() { return updates; }

    /** The file's header metadata (empty for a LoRA taken from a model). */
    public Map<String, String> metadata() { return metadata; }

    /** What reading had to assume (a missing alpha, say), for the user to see. */
    public List<String> notes() { return notes; }

    // ---- components --------------------------------------------------------------------------

    /** The model's components that take adapters, by prefix: the denoiser under its diffusers component name, and the text encoder where it is a libtorch module. */
    public static Map<String, Module> components(TextToImageModel m) {
        Map<String, Module> c = new LinkedHashMap<>();
        c.put(m.denoiser.componentName(), m.denoiser.module());
        if (m.textEncoder.module() != null) c.put(TEXT_ENCODER, m.textEncoder.module());
        return c;
    }

    /** A denoiser alone as components. */
    public static Map<String, Module> components(Denoiser d) {
        return Map.of(d.componentName(), d.module());
    }

    // ---- from a model --------------------------------------------------------------------------

    /**
     * The adapters attached to {@code components} (copies of their weights). Adapters switched off
     * (merged ones among them, whose update is in the weights already) are left out.
     */
    public static LoraWeights of(Map<String, Module> components) {
        Map<String, Update> u = new TreeMap<>();
        try (var g = Tensors.noGrad()) {
            components.forEach((prefix, root) -> Lora.adapters(root).forEach((path, a) -> {
                if (a.enabled()) u.put(prefix + "." + path, new Update(a.down().detach().clone(), a.up().detach().clone(), a.alpha()));
            }));
        }
        if (u.isEmpty()) throw new IllegalArgumentException("the model has no LoRA adapters switched on");
        return new LoraWeights(u, publishedNames(components, u.keySet()), Map.of(), List.of(), "in memory");
    }

    public static LoraWeights of(TextToImageModel m) {
        return of(components(m));
    }

    // ---- applying ------------------------------------------------------------------------------

    /** A layer an update applies to. */
    private record Site(String key, Module root, String path, Module layer, Update update) {}

    /** Every update's layer, or a refusal naming the ones that do not fit (so nothing is applied halfway). */
    private List<Site> sites(Map<String, Module> components, String what) {
        List<String> bad = new ArrayList<>();
        List<Site> out = sites(components, key -> key, bad);
        if (!bad.isEmpty())
            throw new IllegalArgumentException(what + ": " + bad.size() + " of " + updates.size() + " LoRA layers do not fit this model, first: "
                + bad.subList(0, Math.min(3, bad.size())) + "; the model's components: " + components.keySet());
        return out;
    }

    /**
     * Every update's layer; the updates that do not fit go to {@code bad}, each under the name
     * {@code name} gives its qualified key (ours, or the file's own).
     */
    private List<Site> sites(Map<String, Module> components, java.util.function.UnaryOperator<String> name, List<String> bad) {
        Map<String, Map<String, Module>> layers = new java.util.HashMap<>(); // each component's layers, walked once
        List<Site> out = new ArrayList<>();
        for (Map.Entry<String, Update> e : updates.entrySet()) {
            String key = e.getKey();
            int dot = key.indexOf('.');
            Module root = dot < 0 ? null : components.get(key.substring(0, dot));
            Module layer = root == null ? null : layers.computeIfAbsent(key.substring(0, dot), k -> root.modules()).get(key.substring(dot + 1));
            String problem = layer == null ? "no such layer" : shapeProblem(layer, e.getValue());
            if (problem != null) bad.add(name.apply(key) + " (" + problem + ")");
            else out.add(new Site(key, root, key.substring(dot + 1), layer, e.getValue()));
        }
        return out;
    }

    /** alpha / rank beyond this is refused as a corrupt file: trained LoRAs stay within a few. */
    public static final double MAX_ALPHA_OVER_RANK = 1000;
    /** {@code --lora FILE:SCALE} beyond this is refused (ComfyUI's strength range). */
    public static final double MAX_SCALE = 100;

    /**
     * Adds {@code scale * (alpha / rank) up down} into each layer's weight (merging: no adapter remains).
     * Every merged weight is computed before any is written, and refused if it is not finite.
     */
    public void merge(Map<String, Module> components, double scale) {
        checkScale(scale);
        List<Site> sites = sites(components, "merge");
        try (var g = Tensors.noGrad(); Scope s = Scope.open()) {
            List<Tensor[]> merged = new ArrayList<>();
            for (Site site : sites) {
                Tensor w = weightOf(site.layer()); // an adapter on the layer stays as it is: the merge goes into the base weight
                Tensor sum = w.add(Lora.delta(w, site.update().down(), site.update().up(), site.update().scale() * scale));
                if (!torch.isfinite(sum).all().item_bool())
                    throw new IllegalArgumentException("merging at scale " + scale + " makes " + site.key() + " overflow to infinity or NaN; nothing was merged");
                merged.add(new Tensor[] {w, sum});
            }
            for (Tensor[] m : merged) m[0].copy_(m[1]);
        }
    }

    public void merge(TextToImageModel m, double scale) {
        merge(components(m), scale);
    }

    /** Attaches each update as an adapter (unmerged; {@code scale} multiplies alpha), to switch off or train further. */
    public void attach(Map<String, Module> components, double scale) {
        checkScale(scale);
        List<Site> sites = sites(components, "attach");
        for (Site site : sites)
            if (site.layer() instanceof org.pixelpost.nn.Layers.Adaptable l && l.adapter() != null)
                throw new IllegalArgumentException(site.key() + " already has an adapter; merge one of the LoRAs instead");
        for (Site site : sites)
            Lora.attach(site.root(), site.path(), site.update().down(), site.update().up(), site.update().alpha() * scale);
    }

    private static void checkScale(double scale) {
        if (!Double.isFinite(scale)) throw new InvalidValueException("--lora", "scale " + scale + " is not a finite number");
        if (Math.abs(scale) > MAX_SCALE) throw new InvalidValueException("--lora", "scale " + scale + " is beyond +-" + (int) MAX_SCALE);
    }

    private static Tensor weightOf(Module layer) {
        return layer.parameters().get("weight");
    }

    /** Why {@code u} does not fit {@code layer}, or null when it does. */
    private static String shapeProblem(Module layer, Update u) {
        long[][] want = Lora.shapes(layer, u.rank());
        if (want == null) return "not a linear layer or convolution";
        long[] down = Tensors.shape(u.down()), up = Tensors.shape(u.up());
        if (!fits(down, want[0]) || !fits(up, want[1]))
            return "the file's down " + Arrays.toString(down) + " and up " + Arrays.toString(up) + " do not fit the layer, which takes "
                + Arrays.toString(want[0]) + " and " + Arrays.toString(want[1]) + "; a LoRA for another base model?";
        return null;
    }

    /** Equal shapes, where a linear layer's [r, in] and a 1x1 convolution's [r, in, 1, 1] count as equal. */
    private static boolean fits(long[] got, long[] want) {
        if (Arrays.equals(got, want)) return true;
        long[] g = trimOnes(got), w = trimOnes(want);
        return Arrays.equals(g, w);
    }

    private static long[] trimOnes(long[] s) {
        int n = s.length;
        while (n > 2 && s[n - 1] == 1) n--;
        return Arrays.copyOf(s, n);
    }

    // ---- writing -------------------------------------------------------------------------------

    /** Writes the LoRA to {@code file} in {@code layout} (atomically), with kohya-style metadata in the header. */
    public void write(Path file, LoraLayout layout) throws IOException {
        Map<String, Tensor> out = new LinkedHashMap<>();
        try (var g = Tensors.noGrad(); Scope s = Scope.open()) {
            for (Map.Entry<String, Update> e : updates.entrySet()) {
                List<Denoiser.PublishedPart> parts = published.get(e.getKey());
                if (parts == null) {
                    layout.write(e.getKey(), e.getValue(), out);
                    continue;
                }
                // each part: the same down, the up's rows of the part; exactly the layer's update
                Update u = e.getValue();
                for (Denoiser.PublishedPart p : parts)
                    layout.write(p.name(), new Update(u.down(), u.up().narrow(0, p.start(), p.rows()).contiguous(), u.alpha()), out);
            }
            SafeTensors.write(file, out, headerMetadata(layout));
        }
    }

    private Map<String, String> headerMetadata(LoraLayout layout) {
        Map<String, String> m = new TreeMap<>();
        m.put("format", "pt");
        m.put("ss_network_module", "networks.lora");
        List<Integer> ranks = updates.values().stream().map(Update::rank).distinct().toList();
        List<Double> alphas = updates.values().stream().map(layout::writtenAlpha).distinct().toList();
        m.put("ss_network_dim", ranks.size() == 1 ? String.valueOf(ranks.get(0)) : "dynamic");
        m.put("ss_network_alpha", alphas.size() == 1 ? number(alphas.get(0)) : "dynamic");
        boolean te = updates.keySet().stream().anyMatch(k -> k.startsWith(TEXT_ENCODER + "."));
        boolean unet = updates.keySet().stream().anyMatch(k -> !k.startsWith(TEXT_ENCODER + "."));
        m.put("ss_network_train_unet_only", String.valueOf(!te));
        m.put("ss_network_train_text_encoder_only", String.valueOf(!unet));
        String base = metadata.get("ss_base_model_version");
        if (base != null) m.put("ss_base_model_version", base);
        m.put("pixelpost_layout", layout.name());
        return m;
    }

    private static String number(double v) {
        return v == Math.rint(v) && Math.abs(v) < 1e15 ? String.valueOf((long) v) : String.valueOf(v);
    }

    /** A copy with {@code ss_base_model_version} (and any other) metadata set for writing. */
    public LoraWeights withMetadata(Map<String, String> more) {
        Map<String, String> m = new TreeMap<>(metadata);
        m.putAll(more);
        return new LoraWeights(updates, published, m, notes, layout);
    }

    /** The published parts of each of {@code keys} whose denoiser names it otherwise, qualified by component. */
    static Map<String, List<Denoiser.PublishedPart>> publishedNames(Map<String, Module> components, java.util.Collection<String> keys) {
        Map<String, List<Denoiser.PublishedPart>> out = new TreeMap<>();
        for (String key : keys) {
            int dot = key.indexOf('.');
            String prefix = key.substring(0, dot);
            if (!(components.get(prefix) instanceof Denoiser d)) continue;
            List<Denoiser.PublishedPart> parts = d.publishedLayers(key.substring(dot + 1));
            if (!parts.isEmpty())
                out.put(key, parts.stream().map(p -> new Denoiser.PublishedPart(prefix + "." + p.name(), p.start(), p.rows())).toList());
        }
        return out;
    }

    /** A file's module name that is part of a published layer: the qualified key of our layer, and which part. */
    private record PartOf(String key, Denoiser.PublishedPart part) {}

    /** Every published part's file names (in each layout) -> our layer and the part. */
    private static Map<String, PartOf> partNames(Map<String, Module> components) {
        Map<String, PartOf> out = new LinkedHashMap<>();
        components.forEach((prefix, root) -> {
            if (!(root instanceof Denoiser d)) return;
            root.modules().forEach((path, layer) -> {
                if (Lora.shapes(layer, 1) == null) return;
                for (Denoiser.PublishedPart p : d.publishedLayers(path)) {
                    Map<String, String> names = new LinkedHashMap<>();
                    for (LoraLayout l : LoraLayout.ALL) l.names(prefix, p.name(), null, names);
                    for (String n : names.keySet()) out.putIfAbsent(n, new PartOf(prefix + "." + path, p));
                }
            });
        });
        return out;
    }

    /**
     * The parts read for one layer joined into its update: with one down weight and one scale
     * shared by all (as PixelPost writes them), that down and the parts' up rows; otherwise the
     * downs stacked and the ups placed block-diagonally (scales folded in), which is the same sum
     * of updates at the summed rank. A part the file lacks adds nothing to its rows.
     */
    static Update join(long outRows, Map<Denoiser.PublishedPart, Update> parts) {
        List<Map.Entry<Denoiser.PublishedPart, Update>> ps = new ArrayList<>(parts.entrySet());
        Update first = ps.get(0).getValue();
        boolean shared = ps.stream().allMatch(e -> e.getValue().scale() == first.scale() && e.getValue().rank() == first.rank()
            && torch.equal(e.getValue().down(), first.down()));
        if (shared) {
            Tensor up = torch.zeros(outRows, first.rank());
            for (var e : ps) up.narrow(0, e.getKey().start(), e.getKey().rows()).copy_(e.getValue().up().reshape(e.getKey().rows(), first.rank()));
            return new Update(first.down().clone(), up, first.alpha());
        }
        int total = ps.stream().mapToInt(e -> e.getValue().rank()).sum(), col = 0;
        Tensor up = torch.zeros(outRows, total);
        List<Tensor> downs = new ArrayList<>();
        for (var e : ps) {
            Update u = e.getValue();
            up.narrow(0, e.getKey().start(), e.getKey().rows()).narrow(1, col, u.rank()).copy_(u.up().reshape(e.getKey().rows(), u.rank()).mul(Tensors.s(u.scale())));
            downs.add(u.down().reshape(u.rank(), -1));
            col += u.rank();
        }
        return new Update(torch.cat(new org.bytedeco.pytorch.TensorVector(downs.toArray(new Tensor[0])), 0), up, total);
    }

    // ---- reading -------------------------------------------------------------------------------

    private static final Pattern ALPHA = Pattern.compile("^(.*)\\.alpha$");
    private static final Pattern OTHER_KINDS = Pattern.compile(
        "\\.(hada_w[12]_[ab]|hada_t[12]|lokr_w[12](_[ab])?|lokr_t2|lora_mid\\.weight|dora_scale|lora_magnitude_vector.*|oft_.*|diff|diff_b|w_norm|b_norm)$");

    /** The layout a key belongs to and what it holds; an alpha outside every layout's own names is an alpha still. */
    private record Parsed(LoraLayout.Key key, LoraLayout layout) {}

    private static Parsed parse(String key) {
        for (LoraLayout l : LoraLayout.ALL) {
            LoraLayout.Key k = l.parse(key);
            if (k != null) return new Parsed(k, l);
        }
        Matcher m = ALPHA.matcher(key);
        return m.matches() ? new Parsed(new LoraLayout.Key(m.group(1), LoraLayout.Role.ALPHA), null) : null;
    }

    /**
     * The file's module names this model answers to -> qualified path: kohya names with the
     * diffusers block names and (for a U-Net) the original LDM names, and the diffusers/PEFT paths
     * with or without the component prefix.
     */
    static Map<String, String> names(Map<String, Module> components) {
        Map<String, String> names = new LinkedHashMap<>();
        components.forEach((prefix, root) -> root.modules().forEach((path, layer) -> {
            if (Lora.shapes(layer, 1) == null) return;
            for (LoraLayout l : LoraLayout.ALL) l.names(prefix, path, root, names);
        }));
        return names;
    }

    public static LoraWeights read(Path file, TextToImageModel m) throws IOException {
        return read(file, components(m));
    }

    /**
     * Reads a LoRA file in any of the layouts above and checks every layer against
     * {@code components}; a file that does not fit is refused as a whole, naming the first keys
     * that did not fit and the names this model expects.
     */
    public static LoraWeights read(Path file, Map<String, Module> components) throws IOException {
        if (!Files.isRegularFile(file)) throw new BadFileException(file, "no such LoRA file");
        Map<String, String> meta = new TreeMap<>();
        Map<String, Update> updates = new TreeMap<>();
        List<String> notes = new ArrayList<>();
        try (Scope s = Scope.open()) {
            Map<String, Tensor> raw;
            if (file.getFileName().toString().endsWith(".safetensors")) {
                try (SafeTensors st = SafeTensors.open(file)) {
                    meta.putAll(st.metadata());
                    raw = st.loadAll();
                }
            } else {
                raw = Checkpoints.read(file);
            }
            if (raw.isEmpty()) throw new BadFileException(file, "holds no tensors");
            List<String> otherKinds = raw.keySet().stream().filter(k -> OTHER_KINDS.matcher(k).find()).toList();
            if (!otherKinds.isEmpty())
                throw new BadFileException(file, "is not a plain LoRA: " + otherKinds.subList(0, Math.min(3, otherKinds.size()))
                    + " belong to another adapter kind (LyCORIS LoHa/LoKr/Tucker, DoRA, OFT or a full difference); only down/up (A/B) pairs are read");
            // group the keys by module
            Map<String, Tensor[]> groups = new TreeMap<>();
            Map<String, LoraLayout> layouts = new TreeMap<>();
            List<String> unknown = new ArrayList<>();
            for (Map.Entry<String, Tensor> e : raw.entrySet()) {
                Parsed p = parse(e.getKey());
                if (p == null) {
                    unknown.add(e.getKey());
                    continue;
                }
                groups.computeIfAbsent(p.key().module(), k -> new Tensor[3])[p.key().role().ordinal()] = e.getValue();
                if (p.layout() != null) layouts.put(p.key().module(), p.layout());
            }
            if (groups.values().stream().noneMatch(g -> g[0] != null || g[1] != null))
                throw new BadFileException(file, "holds no LoRA weights (no .lora_down/.lora_up or .lora_A/.lora_B keys); first keys: "
                    + first(raw.keySet(), 3) + (raw.keySet().stream().anyMatch(k -> k.startsWith("model.diffusion_model.") || k.startsWith("down_blocks."))
                        ? " (a full model checkpoint?)" : ""));
            if (!unknown.isEmpty())
                throw new BadFileException(file, unknown.size() + " keys are not LoRA weights, first: " + first(unknown, 3)
                    + "; expected <module>.lora_down.weight / .lora_up.weight / .alpha (kohya) or <module>.lora_A.weight / .lora_B.weight (PEFT)");
            Map<String, String> names = names(components);
            Map<String, PartOf> partNames = partNames(components);
            Map<String, Map<Denoiser.PublishedPart, Update>> partsRead = new TreeMap<>();
            JsonNode peftConfig = peftConfig(file);
            List<String> unmatched = new ArrayList<>(), missingAlpha = new ArrayList<>(), problems = new ArrayList<>(), nonPositive = new ArrayList<>();
            Map<String, String> fileNames = new TreeMap<>(); // qualified key -> the file's module name, for messages
            for (Map.Entry<String, Tensor[]> e : groups.entrySet()) {
                String module = e.getKey();
                Tensor[] g = e.getValue();
                if (g[0] == null || g[1] == null) {
                    problems.add(module + " has " + (g[0] == null ? (g[1] == null ? "only an alpha" : "an up weight but no down weight")
                        : "a down weight but no up weight"));
                    continue;
                }
                String key = names.get(module);
                PartOf partOf = key == null ? partNames.get(module) : null;
                if (key == null && partOf == null) {
                    unmatched.add(module);
                    continue;
                }
                Tensor down = g[0].to(torch.ScalarType.Float), up = g[1].to(torch.ScalarType.Float);
                if (down.dim() < 2 || up.dim() < 2 || down.size(0) != up.size(1)) {
                    problems.add(module + ": down " + Arrays.toString(Tensors.shape(down)) + " and up " + Arrays.toString(Tensors.shape(up))
                        + " disagree on the rank");
                    continue;
                }
                if (!torch.isfinite(down).all().item_bool() || !torch.isfinite(up).all().item_bool()) {
                    problems.add(module + " holds NaN or infinite values (in its " + (torch.isfinite(down).all().item_bool() ? "up" : "down") + " weight)");
                    continue;
                }
                int rank = (int) down.size(0);
                double alpha;
                if (g[2] != null) {
                    if (g[2].numel() != 1) {
                        problems.add(module + ".alpha has " + g[2].numel() + " values, not one");
                        continue;
                    }
                    alpha = Tensors.item(g[2].to(torch.ScalarType.Double));
                } else if (peftConfig != null) {
                    double r = peftConfig.path("r").asDouble(rank), la = peftConfig.path("lora_alpha").asDouble(r);
                    double scale = peftConfig.path("use_rslora").asBoolean(false) ? la / Math.sqrt(r) : la / r;
                    alpha = scale * rank;
                } else {
                    alpha = rank;
                    if (layouts.get(module) != null && layouts.get(module).hasAlpha()) missingAlpha.add(module);
                }
                if (!Double.isFinite(alpha)) {
                    problems.add(module + ".alpha is " + alpha);
                    continue;
                }
                if (Math.abs(alpha / rank) > MAX_ALPHA_OVER_RANK) {
                    problems.add(module + ".alpha is " + alpha + " at rank " + rank + ": an update scaled " + (alpha / rank) + "-fold (beyond +-" + (int) MAX_ALPHA_OVER_RANK + ")");
                    continue;
                }
                if (alpha <= 0) nonPositive.add(module + " (alpha " + alpha + ")");
                if (partOf != null) {
                    if (up.size(0) != partOf.part().rows()) {
                        problems.add(module + ": up " + Arrays.toString(Tensors.shape(up)) + " does not fit the layer's " + partOf.part().rows() + " outputs");
                        continue;
                    }
                    if (partsRead.computeIfAbsent(partOf.key(), k -> new LinkedHashMap<>()).put(partOf.part(), new Update(down, up, alpha)) != null)
                        problems.add(module + " names a layer another key of the file names too (" + partOf.part().name() + ")");
                    fileNames.putIfAbsent(partOf.key(), module);
                    continue;
                }
                if (updates.put(key, new Update(s.keep(down), s.keep(up), alpha)) != null)
                    problems.add(module + " names a layer another key of the file names too (" + key + ")");
                fileNames.put(key, module);
            }
            for (Map.Entry<String, Map<Denoiser.PublishedPart, Update>> e : partsRead.entrySet()) {
                String key = e.getKey();
                int dot = key.indexOf('.');
                Tensor w = components.get(key.substring(0, dot)).modules().get(key.substring(dot + 1)).parameters().get("weight");
                Update joined = join(w.size(0), e.getValue());
                if (updates.put(key, new Update(s.keep(joined.down()), s.keep(joined.up()), joined.alpha())) != null)
                    problems.add(fileNames.get(key) + " names a layer another key of the file names too (" + key + ")");
            }
            if (!unmatched.isEmpty()) throw new BadFileException(file, unmatchedMessage(unmatched, groups.size(), raw.keySet(), names, components));
            if (!problems.isEmpty()) throw new BadFileException(file, problems.size() + " LoRA layers are malformed, first: " + first(problems, 3));
            if (!nonPositive.isEmpty())
                notes.add("warning: " + file + ": " + nonPositive.size() + " layers have an alpha that is not positive, so their update is "
                    + "reversed or nothing (first: " + nonPositive.get(0) + ")");
            if (!missingAlpha.isEmpty())
                notes.add(file + ": " + missingAlpha.size() + " layers have no .alpha (first: " + missingAlpha.get(0)
                    + "); read as alpha = rank (scale 1), as AUTOMATIC1111 and ComfyUI read them");
            java.util.Set<String> kinds = new java.util.TreeSet<>(layouts.values().stream().map(LoraLayout::name).toList());
            if (kinds.contains("kohya") && fileNames.entrySet().stream().anyMatch(e -> e.getValue().startsWith(KohyaLayout.UNET)
                && !e.getValue().equals(KohyaLayout.kohyaName(e.getKey()))))
                kinds = new java.util.TreeSet<>(kinds.stream().map(k -> k.equals("kohya") ? "kohya (LDM names)" : k).toList());
            LoraWeights w = new LoraWeights(updates, publishedNames(components, updates.keySet()), meta, notes, String.join(" + ", kinds));
            List<String> misfits = new ArrayList<>();
            w.sites(components, fileNames::get, misfits);
            if (!misfits.isEmpty())
                throw new BadFileException(file, misfits.size() + " of " + updates.size() + " LoRA layers do not fit this model, first: " + first(misfits, 3));
            return w;
        }
    }

    private static String unmatchedMessage(List<String> unmatched, int total, java.util.Set<String> keys, Map<String, String> names,
                                           Map<String, Module> components) {
        StringBuilder b = new StringBuilder();
        b.append(unmatched.size()).append(" of ").append(total).append(" LoRA layers match no layer of this model, first: ").append(first(unmatched, 3));
        if (keys.stream().anyMatch(k -> k.startsWith("lora_te1_") || k.startsWith("lora_te2_") || k.startsWith("text_encoder_2.")))
            b.append("; the file has two text encoders' keys (lora_te1_/lora_te2_): a LoRA for SDXL, which this model is not");
        else if (unmatched.stream().allMatch(u -> u.startsWith(KohyaLayout.TEXT) || u.startsWith(TEXT_ENCODER + ".")) && !components.containsKey(TEXT_ENCODER))
            b.append("; they are text-encoder layers, and this model's text encoder takes no LoRA (only CLIP does)");
        List<String> kohya = names.keySet().stream().filter(n -> n.startsWith(KohyaLayout.UNET)).limit(1).toList();
        List<String> peft = names.entrySet().stream().filter(e -> e.getKey().equals(e.getValue())).map(Map.Entry::getKey).limit(1).toList();
        b.append("; this model's layers are named like ");
        if (!kohya.isEmpty()) b.append(kohya.get(0)).append(".lora_down.weight (kohya) or ");
        if (!peft.isEmpty()) b.append(peft.get(0)).append(".lora_A.weight (PEFT)");
        return b.toString();
    }

    /** PEFT's {@code adapter_config.json} beside the file, which gives its alpha, or null. */
    private static JsonNode peftConfig(Path file) throws IOException {
        Path cfg = file.toAbsolutePath().resolveSibling("adapter_config.json");
        if (!Files.isRegularFile(cfg)) return null;
        try {
            JsonNode j = new ObjectMapper().readTree(cfg.toFile());
            return j.has("lora_alpha") ? j : null;
        } catch (IOException e) {
            throw new BadFileException(cfg, "malformed JSON (" + e.getMessage() + ")");
        }
    }

    private static String first(java.util.Collection<String> c, int n) {
        List<String> l = new ArrayList<>(c);
        return (l.size() > n ? l.subList(0, n) : l) + (l.size() > n ? " ..." : "");
    }
}

package org.pixelpost.lora;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.pipeline.Families;
import org.pixelpost.pipeline.Family;

/**
 * Which layers get adapters, by name: the presets each model family declares (see
 * {@link Family#loraPresets()}), or a regular expression found in the layer's path.
 */
public final class LoraTargets {
    private LoraTargets() {}

    /** Every family's presets together: preset -> the endings of the layer paths it selects in any family (for checking a config before a model is loaded). */
    public static final Map<String, List<String>> PRESETS = union();

    private static Map<String, List<String>> union() {
        Map<String, List<String>> all = new java.util.TreeMap<>();
        for (Family f : Families.ALL)
            f.loraPresets().forEach((k, v) -> all.computeIfAbsent(k, x -> new ArrayList<>()).addAll(v));
        all.replaceAll((k, v) -> List.copyOf(v));
        return java.util.Collections.unmodifiableMap(all);
    }

    /** The default: attention projections only, as kohya's and diffusers' LoRA scripts do. */
    public static final List<String> DEFAULT = List.of("attention");

    /** A predicate on layer paths for {@code targets}: any family's preset names, or regular expressions found in the path. */
    public static Predicate<String> of(List<String> targets) {
        return of(targets, PRESETS);
    }

    /** As {@link #of(List)}, with the presets of {@code family} (a preset it does not declare is refused, naming the ones it does). */
    public static Predicate<String> of(List<String> targets, Family family) {
        Map<String, List<String>> own = family.loraPresets();
        for (String t : targets)
            for (String part : t.split(","))
                if (PRESETS.containsKey(part.strip()) && !own.containsKey(part.strip()))
                    throw new InvalidValueException("lora_targets", "preset '" + part.strip() + "' does not apply to " + family.displayName()
                        + " models; their presets: " + String.join(", ", new java.util.TreeSet<>(own.keySet())));
        return of(targets, own);
    }

    private static Predicate<String> of(List<String> targets, Map<String, List<String>> presets) {
        if (targets == null || targets.isEmpty()) throw new InvalidValueException("lora_targets", "is empty; name at least one target (presets: "
            + String.join(", ", PRESETS.keySet().stream().sorted().toList()) + ", or a regular expression)");
        List<Predicate<String>> any = new ArrayList<>();
        List<String> flat = new ArrayList<>();
        for (String t : targets) {
            // "attention,ff" names two presets; a comma inside a regular expression stays
            List<String> parts = List.of(t.split(","));
            if (parts.size() > 1 && parts.stream().allMatch(x -> presets.containsKey(x.strip()))) flat.addAll(parts);
            else flat.add(t);
        }
        for (String t : flat) {
            String name = t.strip();
            List<String> endings = presets.get(name);
            if (endings != null) {
                any.add(p -> endings.stream().anyMatch(e -> ("." + p).endsWith(e)));
                continue;
            }
            try {
                Pattern re = Pattern.compile(name);
                any.add(p -> re.matcher(p).find());
            } catch (PatternSyntaxException e) {
                throw new InvalidValueException("lora_targets", "'" + name + "' is neither a preset (" + String.join(", ", PRESETS.keySet().stream().sorted().toList())
                    + ") nor a valid regular expression (" + e.getDescription() + ")");
            }
        }
        return p -> any.stream().anyMatch(f -> f.test(p));
    }
}

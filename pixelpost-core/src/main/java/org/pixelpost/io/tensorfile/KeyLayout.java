package org.pixelpost.io.tensorfile;

import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.BiFunction;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.bytedeco.pytorch.Tensor;

/**
 * One way a checkpoint may name a model's tensors. A layout turns each stored key (and, where a
 * layout stores a tensor in another shape, the tensor) into the model's own key, or drops it by
 * returning {@code null}. Models list the layouts they accept; {@link #pick} chooses the one that
 * explains the file best.
 */
public record KeyLayout(String name, BiFunction<String, Tensor, Map.Entry<String, Tensor>> mapping) {

    public static KeyLayout identity(String name) {
        return new KeyLayout(name, Map::entry);
    }

    /**
     * Regex rules applied in order to every key ({@code replaceAll}); a key that no rule touches
     * is kept unless {@code dropUnmatched}. A rule whose replacement is {@code null} drops the key.
     */
    public static KeyLayout rules(String name, boolean dropUnmatched, String... patternReplacement) {
        List<Pattern> ps = new ArrayList<>();
        List<String> rs = new ArrayList<>();
        for (int i = 0; i < patternReplacement.length; i += 2) {
            ps.add(Pattern.compile(patternReplacement[i]));
            rs.add(patternReplacement[i + 1]);
        }
        return new KeyLayout(name, (k, t) -> {
            boolean touched = false;
            for (int i = 0; i < ps.size(); i++) {
                Matcher m = ps.get(i).matcher(k);
                if (m.find()) {
                    if (rs.get(i) == null) return null;
                    k = m.replaceAll(rs.get(i));
                    touched = true;
                }
            }
            return touched || !dropUnmatched ? Map.entry(k, t) : null;
        });
    }

    /** This layout, then {@code next} on its result. */
    public KeyLayout then(KeyLayout next) {
        return new KeyLayout(name, (k, t) -> {
            Map.Entry<String, Tensor> e = mapping.apply(k, t);
            return e == null ? null : next.mapping.apply(e.getKey(), e.getValue());
        });
    }

    public Map<String, Tensor> apply(Map<String, Tensor> stored) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (Map.Entry<String, Tensor> e : stored.entrySet()) {
            Map.Entry<String, Tensor> m = mapping.apply(e.getKey(), e.getValue());
            if (m != null) out.put(m.getKey(), m.getValue());
        }
        return out;
    }

    /** The layout under which most of {@code expected} is found (ties: fewest leftover keys). */
    public static Map<String, Tensor> pick(Map<String, Tensor> stored, Collection<String> expected, List<KeyLayout> layouts) {
        Map<String, Tensor> best = null;
        long bestScore = Long.MIN_VALUE;
        for (KeyLayout l : layouts) {
            Map<String, Tensor> m = l.apply(stored);
            long hit = expected.stream().filter(m::containsKey).count();
            long score = hit * 1_000_000L - (m.size() - hit);
            if (score > bestScore) {
                bestScore = score;
                best = m;
            }
        }
        return best;
    }
}

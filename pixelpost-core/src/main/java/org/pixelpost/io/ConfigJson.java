package org.pixelpost.io;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;
import java.lang.reflect.RecordComponent;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.pixelpost.io.check.InvalidValueException;

/**
 * Component configs (a U-Net's, a VAE's, a text encoder's, a scheduler's) as records bound to the
 * reference libraries' {@code config.json} by one mapper: each component is the snake_case key of
 * its name unless {@link Key} names another (transformers' {@code num_hidden_layers}); a key that is
 * absent takes the value of the defaults record, and a {@link Required} one must be there. Values
 * are checked against the component's type and refused by key; the records check their own
 * ranges. Keys the record does not name ({@code _class_name}, {@code act_fn}, ...) are ignored.
 */
public final class ConfigJson {
    private ConfigJson() {}

    public static final ObjectMapper MAPPER = new ObjectMapper();

    /** The JSON key of a component whose name in snake_case is not it. */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Key {
        String value();
    }

    /** A component the file must give (no default applies). */
    @Retention(RetentionPolicy.RUNTIME)
    @Target(ElementType.RECORD_COMPONENT)
    public @interface Required {}

    /** The JSON key of {@code c}. */
    public static String key(RecordComponent c) {
        Key k = c.getAnnotation(Key.class);
        return k != null ? k.value() : c.getName().replaceAll("([a-z0-9])([A-Z])", "$1_$2").toLowerCase(java.util.Locale.ROOT);
    }

    /** {@code j} as a {@code type}, absent keys from {@code defaults}. */
    public static <R extends Record> R read(Class<R> type, JsonNode j, R defaults) {
        RecordComponent[] cs = type.getRecordComponents();
        List<Object> values = new ArrayList<>();
        for (RecordComponent c : cs) {
            String key = key(c);
            JsonNode v = j.get(key);
            if (v == null || v.isNull() && c.getType().isPrimitive()) {
                if (c.getAnnotation(Required.class) != null || defaults == null) throw new InvalidValueException(key, "is missing");
                values.add(get(c, defaults));
                continue;
            }
            values.add(value(c, key, v));
        }
        Class<?>[] types = Arrays.stream(cs).map(RecordComponent::getType).toArray(Class<?>[]::new);
        try {
            return type.getDeclaredConstructor(types).newInstance(values.toArray());
        } catch (java.lang.reflect.InvocationTargetException e) {
            if (e.getCause() instanceof RuntimeException r) throw r; // the record's own check
            throw new IllegalStateException(e.getCause());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot build " + type.getSimpleName(), e);
        }
    }

    /** Every component under its key, before {@code extras} (fixed keys such as {@code _class_name}) are added by the caller. */
    public static ObjectNode write(Record r) {
        ObjectNode j = MAPPER.createObjectNode();
        for (RecordComponent c : r.getClass().getRecordComponents()) j.set(key(c), MAPPER.valueToTree(get(c, r)));
        return j;
    }

    private static Object value(RecordComponent c, String key, JsonNode v) {
        Class<?> t = c.getType();
        boolean ok = t == int.class || t == long.class ? v.isIntegralNumber() || v.isNumber() && v.asDouble() == Math.rint(v.asDouble())
            : t == double.class || t == float.class ? v.isNumber()
            : t == boolean.class ? v.isBoolean()
            : t == String.class ? v.isTextual()
            : t == List.class || t.isArray() ? v.isArray() || v.isNull()
            : true;
        if (!ok) throw new InvalidValueException(key, v + " is not " + words(t));
        try {
            return MAPPER.convertValue(v, MAPPER.getTypeFactory().constructType(c.getGenericType()));
        } catch (IllegalArgumentException e) {
            // a value the type's own factory refused (an enum's name) says why; the factory's message names the key
            Throwable root = e;
            while (root.getCause() != null) root = root.getCause();
            if (root != e && root instanceof IllegalArgumentException && root.getMessage() != null && root.getMessage().startsWith(key))
                throw new IllegalArgumentException(root.getMessage());
            throw new InvalidValueException(key, v + " is not " + words(t));
        }
    }

    private static String words(Class<?> t) {
        if (t == int.class || t == long.class) return "an integer";
        if (t == double.class || t == float.class) return "a number";
        if (t == boolean.class) return "true or false";
        if (t == String.class) return "a string";
        if (t == List.class || t.isArray()) return "a list";
        return "a " + t.getSimpleName();
    }

    private static Object get(RecordComponent c, Record r) {
        try {
            return c.getAccessor().invoke(r);
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e);
        }
    }
}

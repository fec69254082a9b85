package org.pixelpost.io.check;

/**
 * The one validation of numbers users give, from flags, config files, model configs and trainer
 * state: finite, in range, integral where it must be. Each check returns the value and otherwise
 * throws an {@link InvalidValueException} naming the key, the value and the allowed range.
 */
public final class Checks {
    private Checks() {}

    public static double finite(String key, double v) {
        if (!Double.isFinite(v)) throw new InvalidValueException(key, v + " is not allowed; a finite number is required");
        return v;
    }

    /** A finite number {@code > 0}. */
    public static double positive(String key, double v) {
        finite(key, v);
        if (!(v > 0)) throw new InvalidValueException(key, v + " is out of range; must be > 0");
        return v;
    }

    /** A finite number {@code >= 0}. */
    public static double nonNegative(String key, double v) {
        finite(key, v);
        if (v < 0) throw new InvalidValueException(key, v + " is out of range; must be >= 0");
        return v;
    }

    /** A finite number in {@code [lo, hi]}. */
    public static double inRange(String key, double v, double lo, double hi) {
        finite(key, v);
        if (v < lo || v > hi) throw new InvalidValueException(key, v + " is out of range; must be in [" + lo + ", " + hi + "]");
        return v;
    }

    /** A finite number in {@code [lo, hi)}. */
    public static double inHalfOpen(String key, double v, double lo, double hi) {
        finite(key, v);
        if (v < lo || v >= hi) throw new InvalidValueException(key, v + " is out of range; must be in [" + lo + ", " + hi + ")");
        return v;
    }

    /** An integer {@code >= min}. */
    public static long atLeast(String key, long v, long min) {
        if (v < min) throw new InvalidValueException(key, v + " is out of range; must be >= " + min);
        return v;
    }

    /** One of the allowed words. */
    public static String oneOf(String key, String v, String... allowed) {
        for (String a : allowed) if (a.equals(v)) return v;
        throw new InvalidValueException(key, "'" + v + "' is not one of " + String.join(", ", allowed));
    }

    /** A JSON number that is an integer (not 2.7, not a string), at least {@code min}. */
    public static long integer(String key, com.fasterxml.jackson.databind.JsonNode n, long min) {
        if (n == null || n.isMissingNode()) throw new InvalidValueException(key, "is missing");
        if (n.isNull()) throw new InvalidValueException(key, "null is not allowed; an integer is required");
        if (!n.isIntegralNumber() && !(n.isNumber() && n.asDouble() == Math.rint(n.asDouble()) && Double.isFinite(n.asDouble())))
            throw new InvalidValueException(key, n + " is not an integer");
        return atLeast(key, n.asLong(), min);
    }
}

"""The Keras 3 model: SASRec-style causal Transformer with attribute-aware, tied item vectors.

Importing this module imports TensorFlow and Keras (about 3 s); :mod:`launch_pipeline.model`
itself does not.  Every custom class is registered with
``keras.saving.register_keras_serializable(package="launch_pipeline")`` so a saved ``.keras``
file loads with ``keras.models.load_model(path, safe_mode=True)`` once this module is imported
(:func:`launch_pipeline.model.load_model` does that).

Item vector (input and output side, tied)::

    v(i) = id_embedding[i] + mean(attribute_embedding[a] for a in attributes(i) if a != 0)

A brand-new item (no trained id row) gets ``mean(attribute embeddings)`` alone.

User state: right-padded item sequences (most recent ``max_len`` items, position ``t`` = t-th of
those), ``x_t = sqrt(dim) * v(item_t) + pos_t (+ event_type_embedding[e_t])``, pre-LayerNorm
blocks with causal self-attention, final LayerNorm; the hidden state at the last real position is
the user vector; logits = ``user_vector . v(item)``.
"""

from __future__ import annotations

import math

from ._tf import import_tf

tf, keras = import_tf()

PACKAGE = "launch_pipeline"


@keras.saving.register_keras_serializable(package=PACKAGE)
class ItemEncoder(keras.layers.Layer):
    """Item vectors = id embedding + mean-pooled attribute embeddings (attribute 0 = padding)."""

    def __init__(
        self,
        n_items: int,
        n_attributes: int,
        n_slots: int,
        dim: int,
        use_attributes: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.n_items = int(n_items)
        self.n_attributes = max(1, int(n_attributes))
        self.n_slots = max(1, int(n_slots))
        self.dim = int(dim)
        self.use_attributes = bool(use_attributes)

    def build(self, input_shape=None):
        init = keras.initializers.TruncatedNormal(stddev=0.05, seed=None)
        self.id_embeddings = self.add_weight(
            name="id_embeddings", shape=(self.n_items + 1, self.dim), initializer=init
        )
        self.attribute_embeddings = self.add_weight(
            name="attribute_embeddings", shape=(self.n_attributes, self.dim), initializer=init
        )
        # the catalogue's attribute table travels with the model (not trained)
        self.item_attributes = self.add_weight(
            name="item_attributes",
            shape=(self.n_items + 1, self.n_slots),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            autocast=False,
        )
        self.built = True

    def attribute_pool(self, attributes):
        """Sparse ``(rows, n_attributes)`` averaging matrix of attribute rows ``(rows, slots)``.

        Ids outside ``1..n_attributes - 1`` (padding, or attributes the model never saw) are
        ignored; a row without known attributes gets an empty row (zero vector).
        """
        a = tf.cast(attributes, tf.int32)
        known = tf.logical_and(a > 0, a < self.n_attributes)
        count = tf.reduce_sum(tf.cast(known, self.attribute_embeddings.dtype), axis=-1)
        where = tf.where(known)
        rows = where[:, 0]
        pool = tf.sparse.SparseTensor(
            indices=tf.stack([rows, tf.cast(tf.gather_nd(a, where), tf.int64)], axis=1),
            values=1.0 / tf.gather(count, rows),
            dense_shape=tf.cast(tf.stack([tf.shape(a)[0], self.n_attributes]), tf.int64),
        )
        return tf.sparse.reorder(pool)

    def attribute_vectors(self, attributes=None, pool=None):
        """Mean attribute embedding of each row of ``attributes`` (``(rows, slots)`` int ids).

        A sparse-dense matmul (cheap to differentiate, unlike a ``(rows, slots, dim)`` gather);
        ``pool`` is a precomputed :meth:`attribute_pool`.
        """
        if pool is None:
            pool = self.attribute_pool(attributes)
        return tf.sparse.sparse_dense_matmul(pool, self.attribute_embeddings)

    def catalog(self, id_keep=None, pool=None):
        """``(n_items + 1, dim)`` vectors of every catalogue item (row 0 = zeros).

        ``id_keep`` (``(n_items + 1,)`` floats in {0, 1}) drops the id part of some items
        (attribute-only vectors), which is how training teaches the model cold-start vectors.
        ``pool``: precomputed :meth:`attribute_pool` of the catalogue (training does that once).
        """
        row_mask = tf.concat(
            [
                tf.zeros((1,), self.id_embeddings.dtype),
                tf.ones((self.n_items,), self.id_embeddings.dtype),
            ],
            axis=0,
        )
        if id_keep is not None:
            row_mask = row_mask * tf.cast(id_keep, row_mask.dtype)
        v = self.id_embeddings * row_mask[:, None]
        if self.use_attributes:
            v = v + self.attribute_vectors(self.item_attributes, pool=pool)
        return v

    def vectors(self, attributes, item_ids=None):
        """Vectors of arbitrary items: attribute rows plus (optional) trained id rows.

        ``item_ids`` of 0 or outside ``1..n_items`` contribute no id part (cold items).
        """
        v = (
            self.attribute_vectors(attributes)
            if self.use_attributes
            else tf.zeros((tf.shape(attributes)[0], self.dim), self.id_embeddings.dtype)
        )
        if item_ids is not None:
            ids = tf.cast(item_ids, tf.int32)
            ok = tf.logical_and(ids > 0, ids <= self.n_items)
            ids = tf.where(ok, ids, tf.zeros_like(ids))
            v = v + tf.gather(self.id_embeddings, ids) * tf.cast(ok, v.dtype)[:, None]
        return v

    def call(self, item_ids):
        return tf.gather(self.catalog(), tf.cast(item_ids, tf.int32))

    def get_config(self):
        config = super().get_config()
        config.update(
            n_items=self.n_items,
            n_attributes=self.n_attributes,
            n_slots=self.n_slots,
            dim=self.dim,
            use_attributes=self.use_attributes,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class CausalBlock(keras.layers.Layer):
    """Pre-LayerNorm Transformer block with causal multi-head self-attention."""

    def __init__(self, dim: int, heads: int, dropout: float, attention_dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.heads = int(heads)
        self.dropout = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attention = keras.layers.MultiHeadAttention(
            num_heads=self.heads,
            key_dim=max(1, self.dim // self.heads),
            dropout=self.attention_dropout,
            name="attention",
        )
        self.drop1 = keras.layers.Dropout(self.dropout)
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.ff1 = keras.layers.Dense(self.dim, activation="gelu", name="ff1")
        self.ff_drop = keras.layers.Dropout(self.dropout)
        self.ff2 = keras.layers.Dense(self.dim, name="ff2")
        self.drop2 = keras.layers.Dropout(self.dropout)

    def build(self, input_shape=None):
        shape = (None, None, self.dim)
        self.norm1.build(shape)
        self.attention.build(shape, shape)
        self.norm2.build(shape)
        self.ff1.build(shape)
        self.ff2.build(shape)
        self.built = True

    def call(self, x, training=None):
        y = self.norm1(x)
        a = self.attention(y, y, use_causal_mask=True, training=training)
        x = x + self.drop1(a, training=training)
        y = self.norm2(x)
        f = self.ff2(self.ff_drop(self.ff1(y), training=training))
        return x + self.drop2(f, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            dim=self.dim,
            heads=self.heads,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class NeighborBlend(keras.layers.Layer):
    """Non-trainable state of the kNN blend: top-k neighbours of every item and the weight.

    Final score of item ``j`` for a user whose last item is ``i``::

        score(j) = logit(j) + alpha * sim(i, j)    (sim = 0 outside i's top-k list)

    ``alpha`` (and the similarity exponent ``beta`` used to build the lists, see
    :func:`launch_pipeline.model.training.item_neighbors`) are chosen on the validation split;
    ``alpha = 0`` switches the blend off.
    """

    def __init__(self, n_items: int, k: int, **kwargs):
        super().__init__(**kwargs)
        self.n_items = int(n_items)
        self.k = max(1, int(k))

    def build(self, input_shape=None):
        self.neighbor_ids = self.add_weight(
            name="neighbor_ids",
            shape=(self.n_items + 1, self.k),
            initializer="zeros",
            dtype="int32",
            trainable=False,
            autocast=False,
        )
        self.neighbor_sims = self.add_weight(
            name="neighbor_sims",
            shape=(self.n_items + 1, self.k),
            initializer="zeros",
            trainable=False,
        )
        self.alpha = self.add_weight(name="alpha", shape=(), initializer="zeros", trainable=False)
        self.beta = self.add_weight(
            name="beta", shape=(), initializer=keras.initializers.Constant(0.5), trainable=False
        )
        self.built = True

    def call(self, inputs):  # pragma: no cover - the blend is applied in numpy by training.py
        return inputs

    def get_config(self):
        config = super().get_config()
        config.update(n_items=self.n_items, k=self.k)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class SequentialRecommender(keras.Model):
    """SASRec-style next-item model.  ``call({"items", "events"})`` -> hidden ``(B, W, dim)``.

    ``items``: ``(B, W)`` right-padded item ids (0 = padding); ``events``: ``(B, W)`` event type
    ids (0 = none) or absent.  Use :func:`launch_pipeline.model.user_vectors` for user vectors.
    """

    def __init__(
        self,
        n_items: int,
        n_attributes: int,
        n_slots: int,
        max_len: int = 50,
        dim: int = 64,
        blocks: int = 2,
        heads: int = 1,
        dropout: float = 0.5,
        attention_dropout: float = 0.2,
        n_event_types: int = 0,
        use_attributes: bool = True,
        knn_neighbors: int = 100,
        train_config: dict | None = None,
        attribute_names: list[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.attribute_names = (
            None if attribute_names is None else [str(a) for a in attribute_names]
        )
        self.n_items = int(n_items)
        self.n_attributes = int(n_attributes)
        self.n_slots = int(n_slots)
        self.max_len = int(max_len)
        self.dim = int(dim)
        self.n_blocks = int(blocks)
        self.heads = int(heads)
        self.dropout_rate = float(dropout)
        self.attention_dropout = float(attention_dropout)
        self.n_event_types = int(n_event_types)
        self.use_attributes = bool(use_attributes)
        self.knn_neighbors = int(knn_neighbors)
        self.train_config = dict(train_config or {})
        self.item_encoder = ItemEncoder(
            self.n_items,
            self.n_attributes,
            self.n_slots,
            self.dim,
            self.use_attributes,
            name="items",
        )
        self.position_embedding = keras.layers.Embedding(
            self.max_len,
            self.dim,
            embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.05),
            name="positions",
        )
        self.event_embedding = (
            keras.layers.Embedding(
                self.n_event_types + 1,
                self.dim,
                embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.05),
                name="events",
            )
            if self.n_event_types > 0
            else None
        )
        self.input_dropout = keras.layers.Dropout(self.dropout_rate)
        self.transformer_blocks = [
            CausalBlock(
                self.dim, self.heads, self.dropout_rate, self.attention_dropout, name=f"block{i}"
            )
            for i in range(self.n_blocks)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.blend = NeighborBlend(self.n_items, self.knn_neighbors, name="blend")
        self.build()

    def build(self, input_shape=None):
        self.item_encoder.build()
        self.position_embedding.build((None, None))
        if self.event_embedding is not None:
            self.event_embedding.build((None, None))
        for b in self.transformer_blocks:
            b.build()
        self.final_norm.build((None, None, self.dim))
        self.blend.build()
        self.built = True

    def encode_vectors(self, item_vectors, items, events=None, training=False):
        """Transformer over already looked-up item vectors ``(B, W, dim)``."""
        w = tf.shape(items)[1]
        x = item_vectors * math.sqrt(self.dim)
        x = x + self.position_embedding(tf.minimum(tf.range(w), self.max_len - 1))[None]
        if self.event_embedding is not None and events is not None:
            ev = tf.cast(events, tf.int32)
            ok = tf.logical_and(ev > 0, ev <= self.n_event_types)
            ev = tf.where(ok, ev, tf.zeros_like(ev))
            x = x + self.event_embedding(ev) * tf.cast(ok, x.dtype)[..., None]
        x = self.input_dropout(x, training=training)
        for b in self.transformer_blocks:
            x = b(x, training=training)
        return self.final_norm(x)

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            items, events = inputs["items"], inputs.get("events")
        else:
            items, events = inputs, None
        items = tf.cast(items, tf.int32)
        vecs = self.item_encoder(items)
        return self.encode_vectors(vecs, items, events, training=training)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "n_items": self.n_items,
            "n_attributes": self.n_attributes,
            "n_slots": self.n_slots,
            "max_len": self.max_len,
            "dim": self.dim,
            "blocks": self.n_blocks,
            "heads": self.heads,
            "dropout": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "n_event_types": self.n_event_types,
            "use_attributes": self.use_attributes,
            "knn_neighbors": self.knn_neighbors,
            "train_config": self.train_config,
            "attribute_names": self.attribute_names,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

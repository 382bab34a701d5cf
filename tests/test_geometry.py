"""Batched quaternion helpers agree with pyquaternion (what nuscenes-devkit uses)."""

import numpy as np
from pyquaternion import Quaternion

from occprep import geometry

RNG = np.random.default_rng(7)
QUATERNIONS = np.concatenate([RNG.normal(size=(20, 4)) * RNG.uniform(0.5, 2.0, size=(20, 1)),  # not unit
                              np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])])


def test_rotation_matrices_product_inverse_and_yaw_match_pyquaternion():
    others = RNG.normal(size=QUATERNIONS.shape)
    matrices = geometry.rotation_matrices(QUATERNIONS)
    products = geometry.quaternion_product(QUATERNIONS, others)
    inverses = geometry.quaternion_inverse(QUATERNIONS)
    yaws = geometry.yaw(QUATERNIONS)
    for q, o, matrix, product, inverse, yaw in zip(QUATERNIONS, others, matrices, products, inverses, yaws):
        np.testing.assert_allclose(matrix, Quaternion(q).rotation_matrix, rtol=0, atol=1e-14)
        np.testing.assert_allclose(product, (Quaternion(q) * Quaternion(o)).q, rtol=0, atol=1e-14)
        np.testing.assert_allclose(inverse, Quaternion(q).inverse.q, rtol=0, atol=1e-14)
        np.testing.assert_allclose(yaw, Quaternion(q).yaw_pitch_roll[0], rtol=0, atol=1e-14)


def test_apply_and_apply_inverse():
    matrices = geometry.rotation_matrices(QUATERNIONS)
    vectors = RNG.normal(size=(len(QUATERNIONS), 3))
    rotated = geometry.apply(matrices, vectors)
    np.testing.assert_allclose(rotated, [Quaternion(q).rotate(v) for q, v in zip(QUATERNIONS, vectors)], atol=1e-13)
    np.testing.assert_allclose(geometry.apply_inverse(matrices, rotated), vectors, atol=1e-13)
